//! An inbox opened by a relative path keeps its file when the process changes directory. A
//! test binary of its own: the working directory is the whole process's.

use hookguard_core::inbox::{now_ms, Accepted, InboxStore, NewItem};
use hookguard_core::schemes::BuildWorkPro;
use hookguard_core::testing;
use hookguard_sqlite::SqliteInbox;

/// The path was kept relative: after a `set_current_dir`, the writer judged the file removed
/// ("removed or replaced") and every accept was `503` for good, and readers
/// opened another file.
#[tokio::test]
async fn a_relative_path_keeps_its_file_after_a_change_of_directory() {
    let dir = std::env::temp_dir().join(format!("hg-sqlite-relative-{}-{}", std::process::id(), now_ms()));
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::env::set_current_dir(&dir).unwrap();
    let inbox = SqliteInbox::open("inbox.db").unwrap();
    assert_eq!(inbox.path(), dir.join("inbox.db"));
    std::env::set_current_dir(&elsewhere).unwrap();
    for n in 0..3 {
        let body = format!(r#"{{"id":"evt_rel_{n}","type":"bid.accepted"}}"#);
        let d = testing::deliver_bytes(BuildWorkPro::new(), "whsec_k", body).unwrap();
        let item = NewItem::from_delivery(&d, Vec::new(), now_ms());
        assert!(matches!(inbox.accept(item).await, Ok(Accepted::Stored(_))), "{n}");
    }
    assert_eq!(inbox.stats().await.unwrap().pending, 3);
    assert!(!elsewhere.join("inbox.db").exists());
    drop(inbox);
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
