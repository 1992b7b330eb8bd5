//! `headroom advise` end to end: a real model folder written by MLX itself,
//! the guide's table through the CLI, and bad input (exit 65/66, no panic).

mod common;

use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

fn advise(args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("advise")
        .args(args)
        .output()
        .expect("run headroom advise")
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = advise(&a);
    assert!(
        out.status.success(),
        "advise {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A tiny Llama-like model built and 4-bit quantized by MLX, saved as two
/// safetensors shards with a config.json carrying `quantization`.
const MAKE_MODEL: &str = r#"
import json, sys
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

class Block(nn.Module):
    def __init__(self, h, i):
        super().__init__()
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)
        self.norm = nn.RMSNorm(h)

class Model(nn.Module):
    def __init__(self, h, i, layers, vocab):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, h)
        self.layers = [Block(h, i) for _ in range(layers)]
        self.lm_head = nn.Linear(h, vocab, bias=False)

out = sys.argv[1]
h, i, layers, vocab = 256, 704, 4, 1024
model = Model(h, i, layers, vocab)
nparams = sum(v.size for _, v in tree_flatten(model.parameters()))
nn.quantize(model, group_size=64, bits=4)
flat = dict(tree_flatten(model.parameters()))
names = sorted(flat)
half = len(names) // 2
mx.save_safetensors(out + "/model-00001-of-00002.safetensors", {k: flat[k] for k in names[:half]})
mx.save_safetensors(out + "/model-00002-of-00002.safetensors", {k: flat[k] for k in names[half:]})
json.dump({"model_type": "llama", "hidden_size": h, "intermediate_size": i,
           "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 4,
           "vocab_size": vocab, "quantization": {"group_size": 64, "bits": 4}},
          open(out + "/config.json", "w"))
print(nparams)
"#;

#[test]
fn reads_a_real_mlx_model_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("tiny-llama-4bit");
    std::fs::create_dir(&model).expect("mkdir");
    let Some(py) = common::need::mlx("reads_a_real_mlx_model_folder") else {
        return;
    };
    let out = std::process::Command::new(py)
        .arg("-c")
        .arg(MAKE_MODEL)
        .arg(&model)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let params: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("parameter count");

    let disk: u64 = std::fs::read_dir(&model)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .map(|e| e.metadata().expect("stat").len())
        .sum();
    let v = json(&["--model", model.to_str().expect("utf-8 path")]);
    let m = &v["model"];
    assert_eq!(m["source"], "folder");
    assert_eq!(m["disk_bytes"].as_u64(), Some(disk), "{m:#}");
    assert_eq!(m["safetensors_files"], 2);
    assert_eq!(m["quantization"]["bits"], 4);
    assert_eq!(m["quantization"]["group_size"], 64);
    assert_eq!(m["shape"]["hidden_size"], 256);
    // Packed uint32 weights unpacked at 8 per word: the model's own count.
    assert_eq!(m["params"].as_f64(), Some(params), "{m:#}");
    // Weights in memory are the tensors' bytes: a little under the files
    // (each file also holds its JSON header).
    let weights = v["requested"]["estimate"]["weights_bytes"]
        .as_u64()
        .expect("weights");
    assert_eq!(Some(weights), m["tensor_bytes"].as_u64());
    assert!(
        weights < disk && disk - weights < 64 * 1024,
        "{weights} vs {disk}"
    );
    assert_eq!(v["requested"]["bits"], 4);
    assert_eq!(v["requested"]["bits_per_weight"], 4.5);
    // A 4 MB model fits any machine that runs these tests.
    assert_eq!(v["recommended"]["verdict"], "fits");
    let cmd = v["command"].as_str().expect("a command line");
    assert!(
        cmd.starts_with(&format!("mlx_lm.lora --model {} --train", model.display())),
        "{cmd}"
    );
    assert!(v["machine"]["total_bytes"].as_u64().expect("total") > 0);

    // The text form says the same.
    let out = advise(&["--model", model.to_str().expect("path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("in 2 safetensors, 4-bit, group 64"), "{text}");

    // --cmd naming the folder reads it too, and lists the checklist.
    let planned = format!(
        "mlx_lm.lora --model {} --train --batch-size 64 --max-seq-length 2048",
        model.display()
    );
    let v = json(&["--cmd", &planned]);
    assert_eq!(v["model"]["disk_bytes"].as_u64(), Some(disk));
    let items = v["checklist"].as_array().expect("checklist");
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["ok"], true, "quantized: {items:?}");
}

#[test]
fn the_guides_table_through_the_cli() {
    for (model, fp16, int8, int4) in [
        ("7B", 14.0, 7.0, 3.5),
        ("llama-13b", 26.0, 13.0, 6.5),
        ("30b", 60.0, 30.0, 15.0),
        ("llama-70b", 140.0, 70.0, 35.0),
        ("nemotron-253b", 506.0, 253.0, 126.5),
    ] {
        let v = json(&["--model", model]);
        let s = &v["sizes"];
        assert_eq!(s["fp16_gb"].as_f64(), Some(fp16), "{model}");
        assert_eq!(s["int8_gb"].as_f64(), Some(int8), "{model}");
        assert_eq!(s["int4_gb"].as_f64(), Some(int4), "{model}");
    }
    let v = json(&["--model", "70B", "--bits", "4", "--batch-size", "1"]);
    assert_eq!(v["requested"]["bits_per_weight"], 4.5);
}

#[test]
fn machine_only() {
    let v = json(&[]);
    assert!(v["machine"]["total_bytes"].as_u64().expect("total") > 0);
    assert!(v["tier"]["ram_gb"].as_u64().is_some());
    assert!(v.get("model").is_none());
}

fn fails(args: &[&str], code: i32, says: &str) {
    let out = advise(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "advise {args:?}: {err}");
    assert!(err.contains(says), "advise {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write fixture");
}

#[test]
fn bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let missing = d.join("no-such-model");
    fails(
        &["--model", missing.to_str().expect("path")],
        66,
        "no such model folder",
    );
    fails(&["--model", "-7B"], 65, "must be a positive number");
    fails(
        &["--model", "7B", "--bits", "3"],
        65,
        "--bits 3: must be 4, 8 or 16",
    );
    fails(
        &["--model", "7B", "--batch-size", "-2"],
        65,
        "--batch-size -2",
    );

    let good_config = br#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}"#;
    // A folder with no config.json.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    fails(
        &["--model", empty.to_str().expect("path")],
        66,
        "config.json",
    );
    // config.json without the fields advise needs.
    let nofields = d.join("nofields");
    std::fs::create_dir(&nofields).expect("mkdir");
    write(&nofields.join("config.json"), br#"{"model_type": "llama"}"#);
    fails(
        &["--model", nofields.to_str().expect("path")],
        65,
        "missing 'hidden_size'",
    );
    // Corrupt safetensors headers: length beyond the file, bad JSON, offsets out of range.
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "beyond",
            [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat(),
            "beyond the",
        ),
        (
            "badjson",
            [6u64.to_le_bytes().as_slice(), b"{oops}"].concat(),
            "not JSON",
        ),
        (
            "offsets",
            {
                let h = br#"{"w": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}"#;
                [(h.len() as u64).to_le_bytes().as_slice(), h, &[0u8; 4]].concat()
            },
            "outside the 4 data bytes",
        ),
    ];
    for (name, bytes, says) in cases {
        let m = d.join(name);
        std::fs::create_dir(&m).expect("mkdir");
        write(&m.join("config.json"), good_config);
        write(&m.join("model.safetensors"), &bytes);
        fails(&["--model", m.to_str().expect("path")], 65, says);
        fails(
            &["--model", m.to_str().expect("path")],
            65,
            "model.safetensors",
        );
    }
}
