//! The conformance table against the tower layer, through a real axum server on 127.0.0.1.

mod common;

use common::{run_all, start_tower};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_adapter_passes_the_conformance_table() {
    let (addr, handler) = start_tower().await;
    run_all(&addr, &handler).await;
}
