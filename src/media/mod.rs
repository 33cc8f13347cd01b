//! Images (v1.1): what an uploaded JPEG, PNG, WebP or GIF becomes before it is stored.
//!
//! It exists so that the privacy and safety rules for photos live in one place, away from
//! HTTP: a phone's photo carries its GPS position in EXIF, and a crafted image can declare
//! dimensions whose pixels would exhaust memory. Every image is decoded by a pure-Rust decoder
//! under `image::Limits` and a pixel-count limit (refused with `TooLarge` before pixels are
//! allocated); the stored copy has its metadata removed and its EXIF orientation applied,
//! re-encoded only when it must be (rotation, or over the size budget), so a small clean
//! photo is stored losslessly. A thumbnail and a ThumbHash placeholder are made from the same
//! decoded pixels.
//!
//! The work is CPU-bound and synchronous; callers run it on the blocking pool with a permit
//! from `Media::permit`, so at most `media.concurrency` images are in memory at once.

mod strip;

use crate::config::MediaConfig;
use base64::Engine;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The image formats Parley processes, told from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    WebP,
    Gif,
}

impl Kind {
    /// The format of these first bytes, if it is one Parley processes.
    pub fn sniff(head: &[u8]) -> Option<Kind> {
        match infer::get(head)?.mime_type() {
            "image/jpeg" => Some(Kind::Jpeg),
            "image/png" => Some(Kind::Png),
            "image/webp" => Some(Kind::WebP),
            "image/gif" => Some(Kind::Gif),
            _ => None,
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Png => ImageFormat::Png,
            Kind::WebP => ImageFormat::WebP,
            Kind::Gif => ImageFormat::Gif,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::WebP => "image/webp",
            Kind::Gif => "image/gif",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum MediaError {
    /// Past a limit (dimensions, pixels, decoder memory): `too_large`.
    TooLarge(String),
    /// Not a decodable image of its format: `bad_request`.
    Bad(String),
}

fn image_error(e: image::ImageError) -> MediaError {
    match e {
        image::ImageError::Limits(l) => MediaError::TooLarge(format!("image too large: {l}")),
        other => MediaError::Bad(format!("not a readable image: {other}")),
    }
}

/// Encoded bytes with their type and pixel size.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug)]
pub struct Processed {
    /// What to store instead of the uploaded bytes; `None`: store them as sent
    /// (`keep_original`). `width`/`height` are those of the stored copy, or, for an original,
    /// of the image as displayed (orientation applied).
    pub stored: Option<Encoded>,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Encoded,
    /// ThumbHash, standard base64.
    pub placeholder: String,
}

/// The bounded pool of image processing: a permit per image in memory.
pub struct Media {
    permits: Arc<Semaphore>,
    wait: Duration,
}

impl Media {
    pub fn new(cfg: &MediaConfig) -> Media {
        Media {
            permits: Arc::new(Semaphore::new(cfg.concurrency)),
            wait: Duration::from_millis(cfg.queue_wait_ms),
        }
    }

    /// A turn to process one image, waiting at most `media.queue_wait_ms`; `None` when the
    /// node stayed busy that long (the caller refuses with `unavailable`).
    pub async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// Decodes `bytes` (of `kind`) under the limits and makes the stored copy, thumbnail and
/// placeholder. Synchronous and CPU-bound: run it on the blocking pool.
pub fn process(
    bytes: &[u8],
    kind: Kind,
    cfg: &MediaConfig,
    keep_original: bool,
) -> Result<Processed, MediaError> {
    let img = decode(bytes, kind, cfg)?;
    let (width, height) = (img.width(), img.height());
    let long = width.max(height);
    let stored = if keep_original {
        None
    } else if kind == Kind::Gif || strip::animated_webp(kind, bytes) {
        // Animations are only stripped: re-encoding would keep one frame.
        Some(stripped(strip::strip(kind, bytes)?, kind, width, height))
    } else if img.oriented
        || long > cfg.max_long_edge
        || bytes.len() as u64 > cfg.reencode_above_bytes
    {
        Some(encode(&fit(&img.pixels, cfg.max_long_edge), cfg.quality)?)
    } else {
        Some(stripped(strip::strip(kind, bytes)?, kind, width, height))
    };
    let (width, height) = stored
        .as_ref()
        .map_or((width, height), |s| (s.width, s.height));
    let thumbnail = encode(
        &fit(&img.pixels, cfg.thumbnail_long_edge),
        cfg.thumbnail_quality,
    )?;
    Ok(Processed {
        stored,
        width,
        height,
        thumbnail,
        placeholder: placeholder(&img.pixels),
    })
}

struct Decoded {
    pixels: DynamicImage,
    /// EXIF orientation was other than "as stored" and has been applied.
    oriented: bool,
}

impl Decoded {
    fn width(&self) -> u32 {
        self.pixels.width()
    }
    fn height(&self) -> u32 {
        self.pixels.height()
    }
}

fn decode(bytes: &[u8], kind: Kind, cfg: &MediaConfig) -> Result<Decoded, MediaError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(cfg.max_dimension);
    limits.max_image_height = Some(cfg.max_dimension);
    limits.max_alloc = Some(cfg.max_decode_mib << 20);
    let mut budget = limits.clone();
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > cfg.max_pixels {
        return Err(MediaError::TooLarge(format!(
            "images are at most {} pixels ({w}x{h} sent)",
            cfg.max_pixels
        )));
    }
    // The decoded buffer itself counts against `max_decode_mib` (the reader's `decode` does
    // this; `from_decoder` does not).
    budget.reserve(decoder.total_bytes()).map_err(image_error)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut pixels = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    let oriented = orientation != image::metadata::Orientation::NoTransforms;
    pixels.apply_orientation(orientation);
    Ok(Decoded { pixels, oriented })
}

fn stripped(bytes: Vec<u8>, kind: Kind, width: u32, height: u32) -> Encoded {
    Encoded {
        bytes,
        content_type: kind.mime(),
        width,
        height,
    }
}

/// The image scaled down to fit `long_edge` (never up).
fn fit(img: &DynamicImage, long_edge: u32) -> std::borrow::Cow<'_, DynamicImage> {
    if img.width().max(img.height()) <= long_edge {
        return std::borrow::Cow::Borrowed(img);
    }
    std::borrow::Cow::Owned(img.resize(long_edge, long_edge, image::imageops::FilterType::Triangle))
}

/// JPEG at `quality`, or PNG when the image has an alpha channel (JPEG has none).
fn encode(img: &DynamicImage, quality: u8) -> Result<Encoded, MediaError> {
    let mut out = Vec::new();
    let content_type = if img.color().has_alpha() {
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .map_err(image_error)?;
        "image/png"
    } else {
        let rgb = img.to_rgb8();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&rgb)
            .map_err(image_error)?;
        "image/jpeg"
    };
    Ok(Encoded {
        bytes: out,
        content_type,
        width: img.width(),
        height: img.height(),
    })
}

/// ThumbHash of the image (computed on at most 100x100 pixels, as the format requires).
fn placeholder(img: &DynamicImage) -> String {
    let small = img.thumbnail(100, 100).to_rgba8();
    let hash = thumbhash::rgba_to_thumb_hash(
        small.width() as usize,
        small.height() as usize,
        small.as_raw(),
    );
    base64::engine::general_purpose::STANDARD.encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MediaConfig {
        crate::config::Config::load(None).unwrap().media
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn a_big_photo_is_scaled_to_the_budget_and_gets_a_thumbnail() {
        let mut c = cfg();
        c.max_long_edge = 64;
        c.thumbnail_long_edge = 16;
        let p = process(&jpeg(200, 100), Kind::Jpeg, &c, false).unwrap();
        assert_eq!((p.width, p.height), (64, 32));
        assert_eq!(p.stored.unwrap().content_type, "image/jpeg");
        assert_eq!((p.thumbnail.width, p.thumbnail.height), (16, 8));
        assert!(!p.placeholder.is_empty());
    }

    #[test]
    fn a_small_clean_photo_is_stored_as_it_was() {
        let bytes = jpeg(40, 30);
        let p = process(&bytes, Kind::Jpeg, &cfg(), false).unwrap();
        assert_eq!(p.stored.unwrap().bytes, bytes);
        assert_eq!((p.width, p.height), (40, 30));
    }

    #[tokio::test]
    async fn a_full_pool_makes_an_upload_wait_a_bounded_time_then_refuses() {
        let mut c = cfg();
        c.concurrency = 1;
        c.queue_wait_ms = 50;
        let media = Media::new(&c);
        let held = media.permit().await.expect("a free turn");
        let t = std::time::Instant::now();
        assert!(
            media.permit().await.is_none(),
            "no second turn while one is held"
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        drop(held);
        assert!(media.permit().await.is_some(), "a turn once it is released");
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        let mut c = cfg();
        c.max_pixels = 100;
        let err = process(&jpeg(20, 20), Kind::Jpeg, &c, false).unwrap_err();
        assert!(matches!(err, MediaError::TooLarge(_)), "{err:?}");
        let mut c = cfg();
        c.max_decode_mib = 0;
        let err = process(&jpeg(20, 20), Kind::Jpeg, &c, false).unwrap_err();
        assert!(
            matches!(err, MediaError::TooLarge(_)),
            "decoder memory: {err:?}"
        );
    }
}
