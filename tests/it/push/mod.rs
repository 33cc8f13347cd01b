//! Push notifications: each provider (`parley::push::providers`) against a local fake of its
//! service (`fakes`), over the same transport as the real one; and the whole flow end to end
//! (`bridge`): real `parley serve` and `parley push` processes against the same fakes.

mod bridge;
pub(crate) mod fakes;
mod providers;
