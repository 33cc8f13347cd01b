//! Push notifications: each provider (`parley::push::providers`) against a local fake of its
//! service (`fakes`), over the same transport as the real one.

mod fakes;
mod providers;
