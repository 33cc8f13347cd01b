//! Lossless metadata removal: the container's metadata blocks are cut out, the coded image
//! data is copied untouched. Used when an image needs no re-encoding, so a clean photo loses
//! nothing but its EXIF, XMP, ICC profile and comments.

use super::{Kind, MediaError};

fn bad(what: &str) -> MediaError {
    MediaError::Bad(format!("malformed image: {what}"))
}

pub(super) fn strip(kind: Kind, bytes: &[u8]) -> Result<Vec<u8>, MediaError> {
    match kind {
        Kind::Jpeg => jpeg(bytes),
        Kind::Png => png(bytes),
        Kind::WebP => webp(bytes),
        Kind::Gif => gif(bytes),
    }
}

/// JPEG: drops APP1..APP13 and APP15 (EXIF, XMP, ICC, Photoshop IRB...) and COM segments
/// before the scan; keeps APP0 (JFIF) and APP14 (Adobe, which tells how to read the colours).
fn jpeg(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    if b.len() < 4 || b[0..2] != [0xFF, 0xD8] {
        return Err(bad("no JPEG start"));
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[0..2]);
    let mut i = 2;
    loop {
        if i + 4 > b.len() || b[i] != 0xFF {
            return Err(bad("JPEG segment"));
        }
        let marker = b[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if len < 2 || i + 2 + len > b.len() {
            return Err(bad("JPEG segment length"));
        }
        let end = i + 2 + len;
        if marker == 0xDA {
            // Start of scan: the rest is coded data (and any later markers), copied as is.
            out.extend_from_slice(&b[i..]);
            return Ok(out);
        }
        let drop = matches!(marker, 0xE1..=0xED | 0xEF | 0xFE);
        if !drop {
            out.extend_from_slice(&b[i..end]);
        }
        i = end;
    }
}

/// PNG: drops the eXIf, iCCP, tEXt, zTXt, iTXt and tIME chunks.
fn png(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    if b.len() < 8 {
        return Err(bad("PNG signature"));
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[0..8]);
    let mut i = 8;
    while i < b.len() {
        if i + 12 > b.len() {
            return Err(bad("PNG chunk"));
        }
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let end = i
            .checked_add(12 + len)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| bad("PNG chunk length"))?;
        let kind = &b[i + 4..i + 8];
        if !matches!(
            kind,
            b"eXIf" | b"iCCP" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"
        ) {
            out.extend_from_slice(&b[i..end]);
        }
        i = end;
        if kind == b"IEND" {
            break;
        }
    }
    Ok(out)
}

/// WebP: drops the EXIF, XMP and ICCP chunks and clears their flags in VP8X.
fn webp(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err(bad("WebP header"));
    }
    let mut body = Vec::with_capacity(b.len());
    body.extend_from_slice(b"WEBP");
    let mut i = 12;
    while i + 8 <= b.len() {
        let fourcc = &b[i..i + 4];
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        let padded = len + (len & 1);
        let end = (i + 8 + padded).min(b.len());
        if i + 8 + len > b.len() {
            return Err(bad("WebP chunk length"));
        }
        match fourcc {
            b"EXIF" | b"XMP " | b"ICCP" => {}
            b"VP8X" if len >= 1 => {
                let start = body.len();
                body.extend_from_slice(&b[i..end]);
                // Flags: ICC 0x20, EXIF 0x08, XMP 0x04.
                body[start + 8] &= !(0x20 | 0x08 | 0x04);
            }
            _ => body.extend_from_slice(&b[i..end]),
        }
        i = end;
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Whether a WebP is animated (VP8X with the animation flag).
pub(super) fn animated_webp(kind: Kind, b: &[u8]) -> bool {
    kind == Kind::WebP && b.len() > 20 && &b[12..16] == b"VP8X" && b[20] & 0x02 != 0
}

/// GIF: drops comment extensions and application extensions other than the looping ones
/// (NETSCAPE2.0, ANIMEXTS1.0), which is where XMP lives.
fn gif(b: &[u8]) -> Result<Vec<u8>, MediaError> {
    if b.len() < 13 || &b[0..3] != b"GIF" {
        return Err(bad("GIF header"));
    }
    let mut i = 13;
    if b[10] & 0x80 != 0 {
        i += 3 << ((b[10] & 0x07) + 1);
    }
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b.get(..i).ok_or_else(|| bad("GIF colour table"))?);
    while i < b.len() {
        let start = i;
        match b[i] {
            0x3B => {
                out.push(0x3B);
                return Ok(out);
            }
            0x21 => {
                let label = *b.get(i + 1).ok_or_else(|| bad("GIF extension"))?;
                let first = b.get(i + 2..i + 14).unwrap_or(&[]);
                let keep = match label {
                    0xFE => false,
                    0xFF => {
                        first.len() == 12
                            && matches!(&first[1..12], b"NETSCAPE2.0" | b"ANIMEXTS1.0")
                    }
                    _ => true,
                };
                i = sub_blocks(b, i + 2)?;
                if keep {
                    out.extend_from_slice(&b[start..i]);
                }
            }
            0x2C => {
                let flags = *b.get(i + 9).ok_or_else(|| bad("GIF image"))?;
                i += 10;
                if flags & 0x80 != 0 {
                    i += 3 << ((flags & 0x07) + 1);
                }
                i = sub_blocks(b, i + 1)?; // after the LZW code size byte
                out.extend_from_slice(&b[start..i]);
            }
            _ => return Err(bad("GIF block")),
        }
    }
    Err(bad("GIF without trailer"))
}

/// The index after a chain of GIF sub-blocks starting at `i` (ended by a zero length).
fn sub_blocks(b: &[u8], mut i: usize) -> Result<usize, MediaError> {
    loop {
        let n = usize::from(*b.get(i).ok_or_else(|| bad("GIF sub-block"))?);
        i += 1 + n;
        if n == 0 {
            return Ok(i);
        }
        if i > b.len() {
            return Err(bad("GIF sub-block"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_loses_exif_and_comments_and_keeps_its_scan() {
        let app1 = [0xFF, 0xE1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0, 0];
        let com = [0xFF, 0xFE, 0x00, 0x04, b'h', b'i'];
        let app0 = [0xFF, 0xE0, 0x00, 0x04, 1, 2];
        let scan = [0xFF, 0xDA, 0x00, 0x02, 7, 7, 0xFF, 0xD9];
        let input = [&[0xFF, 0xD8][..], &app0, &app1, &com, &scan].concat();
        assert_eq!(
            jpeg(&input).unwrap(),
            [&[0xFF, 0xD8][..], &app0, &scan].concat()
        );
    }

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(6, 4, |x, y| {
            image::Rgba([x as u8 * 40, y as u8 * 60, 9, 255])
        });
        let mut out = Vec::new();
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    fn decodes(bytes: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory(bytes).expect("still an image");
        (img.width(), img.height())
    }

    #[test]
    fn png_webp_and_gif_lose_their_metadata_and_still_decode() {
        let secret = b"PARLEY-SECRET";
        // PNG: an eXIf and a tEXt chunk after IHDR (CRCs are not checked by the strip).
        let png = encoded(image::ImageFormat::Png);
        let chunk = |kind: &[u8], data: &[u8]| {
            [
                &(data.len() as u32).to_be_bytes()[..],
                kind,
                data,
                &[0, 0, 0, 0],
            ]
            .concat()
        };
        let ihdr_end = 8 + 25;
        let with = [
            &png[..ihdr_end],
            &chunk(b"eXIf", secret),
            &chunk(b"tEXt", secret),
            &png[ihdr_end..],
        ]
        .concat();
        let out = super::png(&with).unwrap();
        assert_eq!(out, png);
        // WebP: the simple file made extended, with an EXIF chunk and its flag.
        let webp = encoded(image::ImageFormat::WebP);
        let mut vp8x = vec![0x08 | 0x10, 0, 0, 0];
        vp8x.extend_from_slice(&[5, 0, 0, 3, 0, 0]); // canvas 6 x 4 (minus one)
        let riff = |fourcc: &[u8], data: &[u8]| {
            let mut c = [fourcc, &(data.len() as u32).to_le_bytes()[..], data].concat();
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let body = [
            &b"WEBP"[..],
            &riff(b"VP8X", &vp8x),
            &webp[12..],
            &riff(b"EXIF", secret),
        ]
        .concat();
        let with = [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat();
        assert_eq!(decodes(&with), (6, 4));
        let out = super::webp(&with).unwrap();
        assert!(!out.windows(secret.len()).any(|w| w == secret));
        assert_eq!(out[20] & 0x08, 0, "EXIF flag cleared");
        assert_eq!(decodes(&out), (6, 4));
        // GIF: a comment extension after the header and colour table.
        let gif = encoded(image::ImageFormat::Gif);
        let table = if gif[10] & 0x80 != 0 {
            3 << ((gif[10] & 7) + 1)
        } else {
            0
        };
        let at = 13 + table;
        let comment = [&[0x21, 0xFE, secret.len() as u8][..], secret, &[0]].concat();
        let with = [&gif[..at], &comment, &gif[at..]].concat();
        assert_eq!(decodes(&with), (6, 4));
        let out = super::gif(&with).unwrap();
        assert_eq!(out, gif);
    }

    #[test]
    fn truncated_containers_are_bad_not_a_panic() {
        assert!(jpeg(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF]).is_err());
        assert!(png(b"\x89PNG\r\n\x1a\n\0\0\xff\xffIHDR").is_err());
        assert!(webp(b"RIFF\0\0\0\0WEBPVP8X\xff\xff\xff\x00").is_err());
        assert!(gif(b"GIF89a\x01\0\x01\0\x80\0\0").is_err());
    }
}
