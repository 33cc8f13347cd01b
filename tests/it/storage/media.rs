//! v1.1 images (issue 13, item 1): a file row keeps an image's dimensions, thumbnail and
//! placeholder; a blob is in use while a row names it as content or as thumbnail; purging
//! the row frees both blobs.

use super::*;
use parley::storage::ImageMeta;

pub(super) async fn an_image_row_keeps_its_meta_and_its_thumbnail_blob(store: &dyn Store) {
    let meta = ImageMeta {
        width: 640,
        height: 480,
        thumb_sha256: "thumb-1".into(),
        thumb_content_type: "image/jpeg".into(),
        placeholder: "3OcRJYB4d3h/iIeHeEh3eIhw+j3A".into(),
    };
    let row = FileRow {
        file_id: "img".into(),
        uploader_id: "u1".into(),
        size: 1234,
        content_type: "image/jpeg".into(),
        sha256: "content-1".into(),
        created_at: 7,
        image: Some(meta),
    };
    store.create_file(row.clone()).await.unwrap();
    assert_eq!(store.file("img").await.unwrap(), Some(row));
    assert!(store.blob_in_use("content-1").await.unwrap());
    assert!(store.blob_in_use("thumb-1").await.unwrap());
    assert!(!store.blob_in_use("other").await.unwrap());
    let mut blobs = store.orphaned_blobs(vec!["img".into()]).await.unwrap();
    blobs.sort();
    assert_eq!(blobs, vec!["content-1".to_string(), "thumb-1".to_string()]);
    assert!(!store.blob_in_use("thumb-1").await.unwrap());
    assert!(store.file("img").await.unwrap().is_none());
}
