//! Records written before the one record envelope read into it unchanged: the fixtures are
//! `record.json` files scalelab wrote earlier (their `git_revision` says at which commit: a
//! quickstart run at b5a9439, a digits classifier of schema 2 at 7a5bfba and one of schema 1
//! at cffaa35), and each must parse, keep every field's value when written again, and still
//! hash to its run id.

#![expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use scalelab_spec::{ClassifyRecord, RunRecord, RunStatus, run_id};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", manifest_dir());
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Parses `json` as `R` and checks that writing it again gives every field the same value,
/// adding only the fields in `added` (written since, read with their defaults); returns it.
fn round_trip<R: Serialize + DeserializeOwned>(json: &serde_json::Value, added: &[&str]) -> R {
    let record: R = serde_json::from_value(json.clone()).unwrap();
    let mut again = serde_json::to_value(&record).unwrap();
    for key in added {
        assert!(json.get(key).is_none(), "{key} was in the fixture");
        again.as_object_mut().unwrap().remove(*key).unwrap();
    }
    assert_eq!(&again, json);
    record
}

#[test]
fn a_language_model_record_reads_and_writes_as_before() {
    let json = fixture("lm-record-v1.json");
    let record: RunRecord = round_trip(&json, &[]);
    assert_eq!(record.run_id, "8d5d6712e70f2afa");
    assert_eq!(run_id(&record.config).unwrap(), record.run_id);
    assert_eq!(record.status, RunStatus::Completed);
    assert_eq!(record.result.curve.len(), 23);
    assert!(record.result.kept_tokens.is_none() && !record.result.stopped_early);
}

#[test]
fn classification_records_read_and_write_as_before() {
    let json = fixture("classify-record-v2.json");
    // Written before `resumed` was (it reads as false).
    let record: ClassifyRecord = round_trip(&json, &["resumed"]);
    assert_eq!(run_id(&record.config).unwrap(), "b695e8c03a54cc93");
    assert_eq!(record.run_id, "b695e8c03a54cc93");
    assert!(record.result.test.accuracy > 0.9);

    // Schema 1 had no status and no `resumed`: its runs completed and did not resume.
    let json = fixture("classify-record-v1.json");
    assert!(json.get("status").is_none() && json.get("resumed").is_none());
    let record: ClassifyRecord = serde_json::from_value(json).unwrap();
    assert_eq!(record.schema_version, 1);
    assert_eq!(run_id(&record.config).unwrap(), record.run_id);
    assert_eq!(record.status, RunStatus::Completed);
    assert!(!record.resumed);
}

/// The package's directory, read when the test runs (cargo sets it), not when it was
/// compiled: a test binary reused from a build of another checkout must read this one's
/// files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|e| panic!("CARGO_MANIFEST_DIR: {e}"))
}
