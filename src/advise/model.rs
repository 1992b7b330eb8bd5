//! A model for `headroom advise`: a local MLX / Hugging Face folder
//! (config.json + the headers of its *.safetensors) or a size from the
//! guide's table ("7B", "llama-13b", "nemotron-253b").

use super::estimate::Shape;
use super::folder::Folder;
use crate::input::{read_text, MODEL_CONFIG_JSON};
use crate::Error;
use serde::Serialize;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// MLX affine quantization as config.json records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quantization {
    pub bits: u32,
    pub group_size: u32,
}

/// What advise knows about a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// "folder" or "table" (the guide's sizes, with a guessed shape).
    pub source: &'static str,
    pub params: f64,
    pub shape: Shape,
    pub quantization: Option<Quantization>,
    /// Sum of the *.safetensors file sizes (folders only).
    pub disk_bytes: Option<u64>,
    /// Sum of the tensors' data sizes from the headers (folders only).
    pub tensor_bytes: Option<u64>,
    pub safetensors_files: usize,
}

/// The guide's named models (its "Real-World Examples"), with the published
/// shapes of Llama 1 and Llama-3.1-405B (which Nemotron-Ultra-253B is pruned
/// from; its shape is an approximation).
fn named(name: &str) -> Option<(f64, Shape)> {
    let s = |h, l, a, kv, i, v| Shape {
        hidden_size: h,
        num_hidden_layers: l,
        num_attention_heads: a,
        num_key_value_heads: kv,
        intermediate_size: i,
        vocab_size: v,
        activation_bytes: 2,
    };
    Some(match name.to_ascii_lowercase().as_str() {
        "llama-7b" => (7e9, s(4096, 32, 32, 32, 11008, 32000)),
        "llama-13b" => (13e9, s(5120, 40, 40, 40, 13824, 32000)),
        "llama-30b" => (30e9, s(6656, 60, 52, 52, 17920, 32000)),
        "llama-70b" => (70e9, s(8192, 80, 64, 8, 28672, 32000)),
        "nemotron-253b" => (253e9, s(16384, 162, 128, 8, 53248, 128256)),
        _ => return None,
    })
}

/// "7B", "13b", "0.5B", "350M" → parameters. `Err` for a negative or zero
/// size; `Ok(None)` when the text is not a size at all.
pub fn parse_size(text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'b' | 'B')) => (&t[..i], 1e9),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => return Ok(None),
    };
    let Ok(n) = num.parse::<f64>() else {
        return Ok(None);
    };
    if !n.is_finite() || n <= 0.0 {
        return Err(format!(
            "model size '{t}' must be a positive number of parameters"
        ));
    }
    Ok(Some(n * mult))
}

/// Resolve `--model`: an existing folder, else a known name or a size.
pub fn resolve(arg: &str) -> Result<ModelInfo, Error> {
    let path = Path::new(arg);
    if path.is_dir() {
        return read_folder(path);
    }
    if let Some((params, shape)) = named(arg) {
        return Ok(from_table(arg, params, shape));
    }
    match parse_size(arg).map_err(Error::Data)? {
        Some(params) => Ok(from_table(arg, params, Shape::guess(params))),
        None if path.exists() => Err(Error::Input(format!("{arg}: not a model folder"))),
        None => Err(Error::Input(format!(
            "{arg}: no such model folder (or give a size like 7B, or one of llama-7b, llama-13b, llama-30b, llama-70b, nemotron-253b)"
        ))),
    }
}

fn from_table(name: &str, params: f64, shape: Shape) -> ModelInfo {
    ModelInfo {
        name: name.to_string(),
        source: "table",
        params,
        shape,
        quantization: None,
        disk_bytes: None,
        tensor_bytes: None,
        safetensors_files: 0,
    }
}

/// The fields of config.json advise needs.
#[derive(Debug, PartialEq)]
pub struct ConfigJson {
    pub shape: Shape,
    pub quantization: Option<Quantization>,
}

/// Parse a model's config.json; an error names the missing or bad field.
pub fn parse_config_json(text: &str) -> Result<ConfigJson, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |k: &str| -> Result<Option<u64>, String> {
        match v.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| format!("'{k}' ({x}) must be a positive integer")),
        }
    };
    let need = |k: &str| field(k)?.ok_or_else(|| format!("missing '{k}'"));
    let h = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let shape = Shape {
        hidden_size: h,
        num_hidden_layers: need("num_hidden_layers")?,
        num_attention_heads: heads,
        num_key_value_heads: field("num_key_value_heads")?.unwrap_or(heads),
        intermediate_size: field("intermediate_size")?.unwrap_or(h * 8 / 3),
        vocab_size: need("vocab_size")?,
        activation_bytes: dtype_bytes(&v),
    };
    let q = v
        .get("quantization")
        .or_else(|| v.get("quantization_config"));
    let quantization = match q {
        None | Some(serde_json::Value::Null) => None,
        Some(q) => {
            let num = |k: &str| {
                q.get(k)
                    .and_then(|x| x.as_u64())
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("'quantization.{k}' is missing or not an integer"))
            };
            let bits = num("bits")?;
            let group_size = num("group_size")?;
            if !(1..=16).contains(&bits) || group_size == 0 {
                return Err(format!(
                    "'quantization' bits {bits}, group_size {group_size} are not valid"
                ));
            }
            Some(Quantization { bits, group_size })
        }
    };
    Ok(ConfigJson {
        shape,
        quantization,
    })
}

/// Bytes per activation element from config.json's `torch_dtype` (newer
/// transformers: `dtype`): 4 for float32, else 2 (float16, bfloat16, or not
/// said: what MLX models are published in).
fn dtype_bytes(v: &serde_json::Value) -> u64 {
    let dtype = v
        .get("torch_dtype")
        .or_else(|| v.get("dtype"))
        .and_then(|d| d.as_str());
    if dtype == Some("float32") {
        4
    } else {
        2
    }
}

/// One safetensors file's header, summed.
#[derive(Debug, Default, PartialEq)]
pub struct TensorSums {
    /// Elements as stored (a packed uint32 holds 32/bits weights).
    pub weight_elements: u64,
    pub packed_elements: u64,
    pub data_bytes: u64,
}

/// The largest safetensors header the format itself accepts (huggingface
/// safetensors `MAX_HEADER_SIZE`; bigger is `HeaderTooLarge`).
pub const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// Check and sum a safetensors JSON header; `data_len` is the file size
/// minus the 8-byte length and the header.
pub fn parse_safetensors_header(header: &[u8], data_len: u64) -> Result<TensorSums, String> {
    let v: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    sum_tensors(&v, data_len)
}

/// Check and sum a parsed safetensors header. Sums that pass 2^64 are an
/// error, never a wrapped (tiny) count.
fn sum_tensors(v: &serde_json::Value, data_len: u64) -> Result<TensorSums, String> {
    let obj = v.as_object().ok_or("header is not a JSON object")?;
    let mut sums = TensorSums::default();
    let overflow = || "the tensors' sizes add up past 2^64".to_string();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format!("tensor '{name}': {what}");
        let dtype = t
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?;
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?;
        let mut elements: u64 = 1;
        for d in shape {
            let d = d.as_u64().ok_or_else(|| bad("shape is not integers"))?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| bad("shape overflows"))?;
        }
        let offs = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad("no data_offsets"))?;
        let (Some(a), Some(b)) = (offs[0].as_u64(), offs[1].as_u64()) else {
            return Err(bad("data_offsets are not integers"));
        };
        if a > b || b > data_len {
            return Err(bad(&format!(
                "data_offsets [{a}, {b}] outside the {data_len} data bytes"
            )));
        }
        sums.data_bytes = sums.data_bytes.checked_add(b - a).ok_or_else(overflow)?;
        // Group scales and biases are overhead, not parameters.
        if name.ends_with(".scales") || name.ends_with(".biases") {
            continue;
        }
        let sum = if dtype == "U32" {
            &mut sums.packed_elements
        } else {
            &mut sums.weight_elements
        };
        *sum = sum.checked_add(elements).ok_or_else(overflow)?;
    }
    Ok(sums)
}

/// Read only the 8-byte length and the JSON header of one open file
/// (`name` for messages). Memory: the parsed header, never the declared
/// length before it is checked against the file and the format's cap.
fn read_header(f: File, name: &Path) -> Result<(TensorSums, u64), Error> {
    let name = name.display();
    let corrupt = |why: String| Error::Data(format!("{name}: corrupt safetensors header: {why}"));
    let len = f
        .metadata()
        .map_err(|e| Error::Input(format!("{name}: {e}")))?
        .len();
    let mut reader = std::io::BufReader::new(f);
    let mut n = [0u8; 8];
    reader
        .read_exact(&mut n)
        .map_err(|_| corrupt("shorter than 8 bytes".into()))?;
    let n = u64::from_le_bytes(n);
    let room = len
        .checked_sub(8)
        .ok_or_else(|| corrupt("shorter than 8 bytes".into()))?;
    if n > room {
        return Err(corrupt(format!("length {n} beyond the {len}-byte file")));
    }
    if n > MAX_SAFETENSORS_HEADER {
        return Err(corrupt(format!(
            "length {n} over the format's cap of {MAX_SAFETENSORS_HEADER} bytes"
        )));
    }
    // Parsed as it is read: a header of zeros fails at its first byte.
    let v: serde_json::Value = serde_json::from_reader(reader.take(n))
        .map_err(|e| corrupt(format!("header is not JSON: {e}")))?;
    let sums = sum_tensors(&v, room - n).map_err(corrupt)?;
    Ok((sums, len))
}

pub fn read_folder(dir: &Path) -> Result<ModelInfo, Error> {
    let folder = Folder::open(dir)?;
    let cfg_path = dir.join("config.json");
    let cfg_name = cfg_path.display().to_string();
    let text = read_text(
        folder.open_file(OsStr::new("config.json"))?,
        MODEL_CONFIG_JSON,
    )
    .map_err(|e| e.error(&cfg_name))?;
    let cfg = parse_config_json(&text).map_err(|e| Error::Data(format!("{cfg_name}: {e}")))?;
    let files = folder.names_with_extension("safetensors")?;
    if files.is_empty() {
        return Err(Error::Input(format!(
            "{}: no *.safetensors files",
            dir.display()
        )));
    }
    let overflow = || {
        Error::Data(format!(
            "{}: the *.safetensors sizes add up past 2^64",
            dir.display()
        ))
    };
    let (mut disk, mut data, mut plain, mut packed) = (0u64, 0u64, 0u64, 0u64);
    for f in &files {
        let (s, len) = read_header(folder.open_file(f)?, &dir.join(f))?;
        disk = disk.checked_add(len).ok_or_else(overflow)?;
        data = data.checked_add(s.data_bytes).ok_or_else(overflow)?;
        plain = plain.checked_add(s.weight_elements).ok_or_else(overflow)?;
        packed = packed.checked_add(s.packed_elements).ok_or_else(overflow)?;
    }
    let per_u32 = cfg.quantization.map_or(1, |q| 32 / q.bits.max(1));
    let params = packed
        .checked_mul(u64::from(per_u32))
        .and_then(|p| p.checked_add(plain))
        .ok_or_else(overflow)? as f64;
    // The path as given: it goes into the suggested `--model`.
    let name = dir.display().to_string();
    let mut shape = cfg.shape;
    // Unquantized weights stored at 4 bytes each compute in float32,
    // whatever config.json says.
    if cfg.quantization.is_none() && params > 0.0 && data as f64 / params > 3.5 {
        shape.activation_bytes = 4;
    }
    Ok(ModelInfo {
        name,
        source: "folder",
        params,
        shape,
        quantization: cfg.quantization,
        disk_bytes: Some(disk),
        tensor_bytes: Some(data),
        safetensors_files: files.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names() {
        assert_eq!(parse_size("7B"), Ok(Some(7e9)));
        assert_eq!(parse_size("13b"), Ok(Some(13e9)));
        assert_eq!(parse_size("0.5B"), Ok(Some(5e8)));
        assert_eq!(parse_size("350M"), Ok(Some(3.5e8)));
        assert_eq!(parse_size("models/x"), Ok(None));
        assert_eq!(parse_size("B"), Ok(None));
        assert!(parse_size("-7B").is_err());
        assert!(parse_size("0B").is_err());
        for n in [
            "llama-7b",
            "LLAMA-13B",
            "llama-30b",
            "llama-70b",
            "nemotron-253b",
        ] {
            assert!(named(n).is_some(), "{n}");
        }
        assert_eq!(named("llama-70b").map(|n| n.0), Some(70e9));
    }

    #[test]
    fn config_json_fields() {
        // mlx-community/Llama-3.2-1B-Instruct-4bit config.json (fields advise reads).
        let c = parse_config_json(
            r#"{"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256,
                "quantization": {"group_size": 64, "bits": 4}}"#,
        )
        .expect("parses");
        assert_eq!(c.shape.num_key_value_heads, 8);
        assert_eq!(c.shape.activation_bytes, 2);
        assert_eq!(
            c.quantization,
            Some(Quantization {
                bits: 4,
                group_size: 64
            })
        );
        let c = parse_config_json(
            r#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}"#,
        )
        .expect("parses");
        assert_eq!(c.shape.num_key_value_heads, 4);
        assert_eq!(c.quantization, None);
        let c = parse_config_json(
            r#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "torch_dtype": "float32"}"#,
        )
        .expect("parses");
        assert_eq!(c.shape.activation_bytes, 4);
        for (text, err) in [
            (
                r#"{"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}"#,
                "missing 'hidden_size'",
            ),
            (
                r#"{"hidden_size": -1}"#,
                "'hidden_size' (-1) must be a positive integer",
            ),
            (
                r#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "quantization": {"bits": 4}}"#,
                "'quantization.group_size' is missing or not an integer",
            ),
            ("[1", "not JSON"),
        ] {
            let got = parse_config_json(text).expect_err(text);
            assert!(got.contains(err), "{got}");
        }
    }

    #[test]
    fn safetensors_headers() {
        let h = br#"{"__metadata__": {"format": "mlx"},
            "w.weight": {"dtype": "U32", "shape": [64, 8], "data_offsets": [0, 2048]},
            "w.scales": {"dtype": "F16", "shape": [64, 1], "data_offsets": [2048, 2176]},
            "w.biases": {"dtype": "F16", "shape": [64, 1], "data_offsets": [2176, 2304]},
            "norm.weight": {"dtype": "F16", "shape": [64], "data_offsets": [2304, 2432]}}"#;
        let s = parse_safetensors_header(h, 2432).expect("valid");
        assert_eq!(
            s,
            TensorSums {
                weight_elements: 64,
                packed_elements: 512,
                data_bytes: 2432
            }
        );
        let e = parse_safetensors_header(h, 2000).expect_err("offsets beyond data");
        assert!(e.contains("outside the 2000 data bytes"), "{e}");
        assert!(parse_safetensors_header(b"{not json", 0).is_err());
        // Issue 13: shapes summing past 2^64 wrapped to "0.00B params … FITS".
        let e = parse_safetensors_header(
            br#"{"a": {"dtype": "F16", "shape": [9223372036854775808], "data_offsets": [0, 0]},
                 "b": {"dtype": "F16", "shape": [9223372036854775808], "data_offsets": [0, 0]}}"#,
            0,
        )
        .expect_err("past 2^64");
        assert!(e.contains("add up past 2^64"), "{e}");
        assert!(parse_safetensors_header(
            br#"{"a": {"dtype": "F16", "shape": [2], "data_offsets": [4, 0]}}"#,
            8
        )
        .is_err());
    }
}
