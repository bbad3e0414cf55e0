//! TensorBoard event files, written directly: a TFRecord file (each record framed by its
//! length and masked CRC-32C checksums) of `Event` protobufs, the first naming the format
//! version, then one scalar `Summary` per measured value, and the run's hyperparameters
//! through the HParams plugin (`_hparams_/session_start_info` and `session_end_info`, as
//! `tensorboard.plugins.hparams.summary_v2.hparams_pb` writes them).
//!
//! The messages are declared here with prost's derive, field numbers from TensorFlow's
//! `event.proto`, `summary.proto`, `tensor.proto` and TensorBoard's hparams
//! `plugin_data.proto`. Scalars are `simple_value`s, float32 as PyTorch's `SummaryWriter`
//! writes them: a reader sees each record value rounded to float32.
//!
//! Checked by the real `tensorboard` package: `scripts/verify-integrations.py`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::view::{ParamValue, Tracked, TrackedStatus};

/// Errors writing event files.
#[derive(Debug, thiserror::Error)]
pub enum TensorBoardError {
    /// The directory or file could not be written.
    #[error(
        "{action} {path}: {source}\nhint: check that the directory is writable and the disk has space"
    )]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// The protobuf messages (only the fields written).
// ---------------------------------------------------------------------------------------------

/// `tensorflow.Event`.
#[derive(Clone, PartialEq, Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Value", tags = "2, 8")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    content: Vec<u8>,
}

/// `tensorflow.TensorProto`: here only the empty float32 tensor.
#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    /// `DT_FLOAT` = 1.
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShapeProto>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
}

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
}

/// `tensorflow.TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

/// `tensorboard.hparams.HParamsPluginData`.
#[derive(Clone, PartialEq, Message)]
struct HParamsPluginData {
    #[prost(int32, tag = "1")]
    version: i32,
    #[prost(oneof = "HParamsData", tags = "3, 4")]
    data: Option<HParamsData>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum HParamsData {
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, Message)]
struct SessionStartInfo {
    #[prost(btree_map = "string, message", tag = "1")]
    hparams: BTreeMap<String, ProtoValue>,
    #[prost(string, tag = "4")]
    group_name: String,
    #[prost(double, tag = "5")]
    start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`; status 1 = success, 2 = failure.
#[derive(Clone, PartialEq, Message)]
struct SessionEndInfo {
    #[prost(int32, tag = "1")]
    status: i32,
    #[prost(double, tag = "2")]
    end_time_secs: f64,
}

/// `google.protobuf.Value`: a number, a string or a bool.
#[derive(Clone, PartialEq, Message)]
struct ProtoValue {
    #[prost(oneof = "Kind", tags = "2, 3, 4")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    Text(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
}

// ---------------------------------------------------------------------------------------------
// Framing and writing.
// ---------------------------------------------------------------------------------------------

/// TFRecord's masked CRC-32C (TensorFlow's `crc32c::Mask`): rotated right by 15 bits, plus a
/// constant, so that a CRC of data holding CRCs stays well spread.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: `u64` length, masked CRC of the length, data, masked CRC of the data, all
/// little-endian.
fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// A summary event carrying the hparams plugin's data under `tag`, with the empty float tensor
/// of shape `(0,)` TensorBoard's own `hparams_pb` attaches (`metadata.NULL_TENSOR`).
fn hparams_event(tag: &str, data: HParamsData, wall_time: f64) -> Event {
    let content = HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    let value = SummaryValue {
        tag: tag.to_string(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "hparams".into(),
                content,
            }),
        }),
        value: Some(Value::Tensor(TensorProto {
            dtype: 1,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![Dim { size: 0 }],
            }),
            float_val: Vec::new(),
        })),
    };
    Event {
        wall_time,
        step: 0,
        what: Some(What::Summary(Summary { value: vec![value] })),
    }
}

/// The event file's bytes for `run`.
pub fn encode(run: &Tracked) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |event: Event| frame(&event.encode_to_vec(), &mut out);
    push(Event {
        wall_time: run.start_time,
        step: 0,
        what: Some(What::FileVersion("brain.Event:2".into())),
    });
    let hparams = run
        .params
        .iter()
        .map(|(key, value)| {
            let kind = match value {
                ParamValue::Number(x) => Kind::Number(*x),
                ParamValue::Text(s) => Kind::Text(s.clone()),
                ParamValue::Bool(b) => Kind::Bool(*b),
            };
            (key.clone(), ProtoValue { kind: Some(kind) })
        })
        .collect();
    push(hparams_event(
        "_hparams_/session_start_info",
        HParamsData::SessionStartInfo(SessionStartInfo {
            hparams,
            group_name: run.run_id.clone(),
            start_time_secs: run.start_time,
        }),
        run.start_time,
    ));
    for metric in &run.metrics {
        push(Event {
            wall_time: metric.wall_time,
            step: metric.step,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: metric.key.clone(),
                    metadata: None,
                    value: Some(Value::SimpleValue(metric.value as f32)),
                }],
            })),
        });
    }
    let status = match run.status {
        TrackedStatus::Completed => 1,
        TrackedStatus::Diverged => 2,
    };
    push(hparams_event(
        "_hparams_/session_end_info",
        HParamsData::SessionEndInfo(SessionEndInfo {
            status,
            end_time_secs: run.end_time,
        }),
        run.end_time,
    ));
    out
}

/// The event file's name for `run`: TensorBoard reads every file whose name holds `tfevents`.
fn file_name(run: &Tracked) -> String {
    format!(
        "events.out.tfevents.{}.scalelab.{}",
        run.start_time.max(0.0) as u64,
        run.run_id
    )
}

/// Writes `run`'s event file into `dir` (created if missing), atomically, replacing any event
/// file scalelab wrote there for the same run before. Returns the file's path.
pub fn write_events(dir: &Path, run: &Tracked) -> Result<PathBuf, TensorBoardError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| TensorBoardError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let name = file_name(run);
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(&encode(run)).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("writing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("renaming into", &path))?;
    // An earlier export of the same run (another start time) would show its curve twice.
    let suffix = format!(".scalelab.{}", run.run_id);
    for entry in std::fs::read_dir(dir)
        .map_err(io("reading", dir))?
        .flatten()
    {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other != name && other.starts_with("events.out.tfevents.") && other.ends_with(&suffix) {
            std::fs::remove_file(entry.path()).map_err(io("removing", &entry.path()))?;
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Metric;

    /// CRC-32C of "123456789" is 0xE3069283 (the check value of the Castagnoli CRC, RFC 3720
    /// appendix B.4); masked as TensorFlow's crc32c::Mask, ((c >> 15) | (c << 17)) + 0xa282ead8
    /// mod 2³², it is 0xC78AB0E5 (python3 -c "c=0xE3069283;
    /// print(hex(((((c>>15)|(c<<17))&0xffffffff)+0xa282ead8)&0xffffffff))").
    #[test]
    fn masked_crc_matches_tensorflow() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xC78A_B0E5);
    }

    fn run() -> Tracked {
        Tracked {
            run_id: "abc".into(),
            params: vec![("model.d_model".into(), ParamValue::Number(48.0))],
            metrics: vec![Metric {
                key: "loss/val".into(),
                step: 1000,
                value: 2.5,
                wall_time: 10.0,
            }],
            start_time: 5.0,
            end_time: 20.0,
            status: TrackedStatus::Completed,
        }
    }

    /// Reads the records back: lengths and both checksums agree, and the events decode to
    /// what was written.
    #[test]
    fn records_frame_and_decode() {
        let bytes = encode(&run());
        let mut events = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(rest[8..12].try_into().unwrap()),
                masked_crc(&rest[..8])
            );
            let data = &rest[12..12 + len];
            let crc = u32::from_le_bytes(rest[12 + len..16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            events.push(Event::decode(data).unwrap());
            rest = &rest[16 + len..];
        }
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion("brain.Event:2".into()))
        );
        let Some(What::Summary(summary)) = &events[2].what else {
            panic!("the third event is the scalar")
        };
        assert_eq!(events[2].step, 1000);
        assert_eq!(summary.value[0].tag, "loss/val");
        assert_eq!(summary.value[0].value, Some(Value::SimpleValue(2.5)));
        let Some(What::Summary(start)) = &events[1].what else {
            panic!("the second event is the hparams")
        };
        let plugin = start.value[0]
            .metadata
            .as_ref()
            .unwrap()
            .plugin_data
            .as_ref()
            .unwrap();
        assert_eq!(plugin.plugin_name, "hparams");
        let data = HParamsPluginData::decode(&plugin.content[..]).unwrap();
        let Some(HParamsData::SessionStartInfo(info)) = data.data else {
            panic!("session start info")
        };
        assert_eq!(info.hparams["model.d_model"].kind, Some(Kind::Number(48.0)));
    }

    #[test]
    fn rewriting_a_run_replaces_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = run();
        let a = write_events(dir.path(), &first).unwrap();
        first.start_time = 6.0;
        let b = write_events(dir.path(), &first).unwrap();
        assert_ne!(a, b);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![b.file_name().unwrap().to_owned()]);
    }
}
