//! Config loading with any text in place of one file of the example config: `config::load`
//! answers with a config or its errors, never a panic, and each error names a file of the folder
//! and, when it has one, a line and column inside that file.
//!
//! The first byte picks the file; the rest is its text. `screening.toml` is left out: it names a
//! file the loader reads, and a fuzzer that writes `list = "/dev/zero"` reads forever, which an
//! operator's own config may do and is no bug.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tempfile::TempDir;

/// The example config, built in.
const EXAMPLE: [(&str, &str); 9] = [
    ("gateway.toml", include_str!("../../../config/gateway.toml")),
    ("models.toml", include_str!("../../../config/models.toml")),
    ("country-groups.toml", include_str!("../../../config/country-groups.toml")),
    ("jurisdictions.toml", include_str!("../../../config/jurisdictions.toml")),
    ("tenants.toml", include_str!("../../../config/tenants.toml")),
    ("expectations.toml", include_str!("../../../config/expectations.toml")),
    ("screening-list.csv", include_str!("../../../config/screening-list.csv")),
    ("ownership.toml", include_str!("../../../config/ownership.toml")),
    ("screening.toml", include_str!("../../../config/screening.toml")),
];
/// The files fuzzed: all but screening.toml.
const FUZZED: usize = EXAMPLE.len() - 1;

/// A copy of the example in a folder of its own for this process, made once: each input
/// rewrites one file and puts it back. libFuzzer ends the process without dropping it, so it is
/// made under this crate's ignored target folder rather than the system's temp folder.
static DIR: LazyLock<TempDir> = LazyLock::new(|| {
    let scratch = concat!(env!("CARGO_MANIFEST_DIR"), "/target/scratch");
    std::fs::create_dir_all(scratch).expect("scratch folder");
    let dir = tempfile::tempdir_in(scratch).expect("temp dir");
    for (name, text) in EXAMPLE {
        std::fs::write(dir.path().join(name), text).expect("write example");
    }
    if let Err(e) = load(dir.path()) {
        panic!("the example config does not load:\n{e}");
    }
    dir
});

fn load(dir: &Path) -> Result<customs::config::Config, customs::config::ConfigErrors> {
    customs::config::load(dir, &|_| Some("k".into()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else { return };
    let (name, original) = EXAMPLE[usize::from(pick) % FUZZED];
    let dir = DIR.path();
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    let result = load(dir);
    std::fs::write(&path, original).expect("restore");
    let Err(errors) = result else { return };
    assert!(!errors.0.is_empty(), "a config refused with no error");
    let files: Vec<PathBuf> = std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry").path()).collect();
    for e in &errors.0 {
        assert!(!e.message.is_empty(), "{e:?}");
        let file = Path::new(&e.file);
        assert!(files.iter().any(|f| f == file), "an error names no file of the folder: {e}");
        if let Some((line, column)) = e.position {
            let text = if file == path { String::from_utf8_lossy(text).into_owned() } else { contents(file) };
            assert!(line >= 1 && column >= 1, "{e}");
            assert!(line <= text.split('\n').count(), "{e}: the file has {} lines", text.split('\n').count());
        }
    }
    let _ = errors.to_string();
});

fn contents(file: &Path) -> String {
    EXAMPLE
        .iter()
        .find(|(n, _)| file.file_name().is_some_and(|f| f == *n))
        .map_or_else(String::new, |(_, t)| (*t).to_owned())
}
