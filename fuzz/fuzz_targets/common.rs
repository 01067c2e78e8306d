// Shared by the fuzz targets: the entry-point shim, input splitting, and verify-never-panics.
//
// Each target writes `fuzz_main!(|data: &[u8]| { ... });` and starts with
// `#![cfg_attr(all(feature = "libfuzzer", not(feature = "afl")), no_main)]`. The shim gives:
// - feature `afl` (what `scripts/fuzz.sh` builds with `cargo afl build`): an AFL++ persistent loop;
// - feature `libfuzzer` (`cargo fuzz run --features libfuzzer TARGET`, nightly): libFuzzer;
// - neither (CI's `cargo build`): a plain `main` that runs each file given (folders: each file
//   in them) once, or stdin without arguments, to replay a crash with a readable panic.
#![allow(dead_code, unused_macros)]
use bytes::Bytes;
use hookguard_core::{clock::ManualClock, RequestHead, Scheme, Verifier};

#[cfg(all(feature = "afl", feature = "libfuzzer"))]
compile_error!("features `afl` and `libfuzzer` are exclusive");

macro_rules! fuzz_main {
    (|$data:ident: &[u8]| $body:block) => {
        fn fuzz_one($data: &[u8]) $body

        #[cfg(feature = "afl")]
        fn main() {
            afl::fuzz!(|data: &[u8]| {
                fuzz_one(data);
            });
        }

        #[cfg(feature = "libfuzzer")]
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            fuzz_one(data);
        });

        #[cfg(not(any(feature = "afl", feature = "libfuzzer")))]
        fn main() {
            common::replay(fuzz_one);
        }
    };
}

/// Runs `f` once on every file named on the command line (a folder: on each file in it), or
/// on stdin when there is none.
pub fn replay(f: fn(&[u8])) {
    use std::io::Read;
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for arg in std::env::args_os().skip(1) {
        let p = std::path::PathBuf::from(arg);
        if p.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&p)
                .expect("read folder")
                .map(|e| e.expect("folder entry").path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            paths.extend(entries);
        } else {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).expect("read stdin");
        f(&data);
        eprintln!("ran 1 input (stdin)");
        return;
    }
    for p in &paths {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        eprintln!("running {}", p.display());
        f(&data);
    }
    eprintln!("ran {} inputs", paths.len());
}

/// Splits at the first NUL: `(before, after)`; without one, `(data, [])`.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

pub fn run(scheme: impl Scheme, secret: &str, headers: &[(&'static str, &[u8])], uri: &str, body: &[u8]) {
    run_keys(scheme, &[secret], headers, uri, body);
}

/// [`run`] with a verifier holding several secrets (e.g. an HMAC secret and an Ed25519 key).
pub fn run_keys(scheme: impl Scheme, secrets: &[&str], headers: &[(&'static str, &[u8])], uri: &str, body: &[u8]) {
    let v = Verifier::builder(scheme)
        .secrets(secrets)
        .clock(ManualClock::new(1_700_000_000))
        .build()
        .unwrap();
    let mut h = http::HeaderMap::new();
    for (name, value) in headers {
        if let Ok(v) = http::HeaderValue::from_bytes(value) {
            h.insert(*name, v);
        }
    }
    let Ok(uri) = uri.parse::<http::Uri>() else { return };
    let head = RequestHead::new(&http::Method::POST, &uri, &h);
    let _ = v.precheck(&head);
    let _ = v.verify(&head, Bytes::copy_from_slice(body));
}
