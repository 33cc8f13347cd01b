//! Figures for image processing (issue 13): the time to process one 12-megapixel JPEG (its
//! thumbnail and placeholder alone, and with the stored copy), and the peak RSS while `N`
//! such images are processed at once, by `parley::media::process` with the default config.
//!
//! Run in release, on an otherwise idle machine:
//!
//! ```sh
//! cargo run --release --example media_bench -- [images=8] [width=4000] [height=3000]
//! ```
//!
//! A node never processes more than `media.concurrency` (2) images at once; `images` here
//! shows what that bound saves. Peak RSS is the process's `VmHWM` (Linux).

use parley::config::Config;
use parley::media::{process, Kind};
use std::time::Instant;

fn vm(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A photo-like JPEG (smooth gradients and noise, quality 90, as a phone writes).
fn photo(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 28;
        image::Rgb([
            ((x * 255 / w) as u8).wrapping_add(n as u8),
            ((y * 255 / h) as u8).wrapping_add(n as u8),
            (((x + y) * 127 / (w + h)) as u8).wrapping_add(n as u8),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let images = *args.first().unwrap_or(&8) as usize;
    let (w, h) = (*args.get(1).unwrap_or(&4000), *args.get(2).unwrap_or(&3000));
    let cfg = Config::load(None).unwrap().media;
    let bytes = photo(w, h);
    println!(
        "input: {w}x{h} JPEG ({:.1} Mpx), {} bytes",
        f64::from(w) * f64::from(h) / 1e6,
        bytes.len()
    );

    let t = Instant::now();
    let p = process(&bytes, Kind::Jpeg, &cfg, true).unwrap();
    println!(
        "thumbnail + placeholder (decode included, keep_original): {:.0} ms, thumbnail {}x{} {} bytes",
        t.elapsed().as_secs_f64() * 1e3,
        p.thumbnail.width,
        p.thumbnail.height,
        p.thumbnail.bytes.len()
    );
    let t = Instant::now();
    let p = process(&bytes, Kind::Jpeg, &cfg, false).unwrap();
    let stored = p.stored.unwrap();
    println!(
        "default (stored copy {}x{}, {} bytes, re-encoded when over the budget, + thumbnail): {:.0} ms",
        stored.width,
        stored.height,
        stored.bytes.len(),
        t.elapsed().as_secs_f64() * 1e3
    );

    let before = vm("VmRSS:");
    let inputs: Vec<Vec<u8>> = (0..images).map(|_| bytes.clone()).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for input in &inputs {
            let cfg = &cfg;
            s.spawn(move || process(input, Kind::Jpeg, cfg, false).unwrap());
        }
    });
    println!(
        "{images} at once: {:.0} ms wall; peak RSS {} MiB (RSS before: {} MiB, inputs included)",
        t.elapsed().as_secs_f64() * 1e3,
        vm("VmHWM:") / 1024,
        before / 1024
    );
}
