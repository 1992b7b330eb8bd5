//! `headroom advise`: turn a machine, a model and a planned run into the
//! guide's answer (fits / tight / does not fit, the flags to use, the
//! checklist), as text or JSON. `advise()` is pure; `run()` does the I/O.

use super::estimate::{self as est, Estimate, Plan, Tier, Verdict, GB};
use super::machine::Machine;
use super::model::{self, ModelInfo};
use crate::cmdline::TrainFlags;
use crate::Error;
use serde::Serialize;

/// The command line's request, numbers still unchecked (so `--bits 3` or a
/// negative value is our error 65, not clap's).
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub model: Option<String>,
    pub bits: Option<i64>,
    pub group_size: Option<i64>,
    pub batch_size: Option<i64>,
    pub max_seq_length: Option<i64>,
    pub lora_layers: Option<i64>,
    pub lora_rank: Option<i64>,
    pub grad_checkpoint: bool,
    pub cmd: Option<String>,
}

/// The checked request.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub bits: Option<u32>,
    pub group_size: Option<u32>,
    pub plan: Plan,
}

fn positive(name: &str, v: Option<i64>, max: i64) -> Result<Option<u64>, Error> {
    match v {
        None => Ok(None),
        Some(n) if (1..=max).contains(&n) => Ok(Some(n as u64)),
        Some(n) => Err(Error::Data(format!(
            "--{name} {n}: must be between 1 and {max}"
        ))),
    }
}

/// Check the flags; a `--cmd` command line fills what the flags leave out.
pub fn check(req: &Request, from_cmd: Option<&TrainFlags>) -> Result<Checked, Error> {
    let bits = match req.bits {
        None => None,
        Some(b @ (4 | 8 | 16)) => Some(b as u32),
        Some(b) => return Err(Error::Data(format!("--bits {b}: must be 4, 8 or 16"))),
    };
    let group_size = match req.group_size {
        None => None,
        Some(g @ (32 | 64 | 128)) => Some(g as u32),
        Some(g) => {
            return Err(Error::Data(format!(
                "--group-size {g}: must be 32, 64 or 128"
            )))
        }
    };
    let c = from_cmd.cloned().unwrap_or_default();
    let layers = match c.num_layers {
        Some(n) if n > 0 => Some(n as u64),
        _ => None,
    };
    let plan = Plan {
        batch_size: positive("batch-size", req.batch_size, 4096)?
            .or(c.batch_size)
            .unwrap_or(est::LORA_BATCH_SIZE),
        max_seq_length: positive("max-seq-length", req.max_seq_length, 1 << 20)?
            .or(c.max_seq_length)
            .unwrap_or(est::LORA_MAX_SEQ_LENGTH),
        lora_layers: positive("lora-layers", req.lora_layers, 1 << 16)?
            .or(layers)
            .unwrap_or(est::LORA_NUM_LAYERS as u64),
        lora_rank: positive("lora-rank", req.lora_rank, 1 << 16)?.unwrap_or(est::LORA_RANK),
        grad_checkpoint: req.grad_checkpoint || c.grad_checkpoint,
    };
    Ok(Checked {
        bits,
        group_size,
        plan,
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    pub params: f64,
    pub fp16_gb: f64,
    pub int8_gb: f64,
    pub int4_gb: f64,
    pub int8_g64_gb: f64,
    pub int4_g64_gb: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Assessment {
    pub bits: u32,
    pub group_size: u32,
    pub bits_per_weight: f64,
    pub plan: Plan,
    pub estimate: Estimate,
    pub verdict: Verdict,
    pub generation_verdict: Verdict,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckItem {
    pub item: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizes: Option<Sizes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<Assessment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide_batch_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seq_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommended: Option<Assessment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub checklist: Vec<CheckItem>,
    pub notes: Vec<String>,
    /// The recommended run against the GPU wired limit (Apple Silicon):
    /// the `sudo sysctl iogpu.wired_limit_mb=…` line, or why none helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired: Option<String>,
}

fn assess(m: &ModelInfo, bits: u32, group: u32, plan: Plan, ram: u64) -> Assessment {
    let bpw = est::bits_per_weight(bits, group);
    let own = m.quantization.map_or(16, |q| q.bits) == bits
        && m.quantization.is_none_or(|q| q.group_size == group);
    let weights = match m.tensor_bytes {
        Some(b) if own => b,
        _ => (m.params * bpw / 8.0).round() as u64,
    };
    let estimate = est::estimate(&m.shape, weights, &plan);
    Assessment {
        bits,
        group_size: group,
        bits_per_weight: bpw,
        plan,
        verdict: est::verdict(estimate.training_bytes, ram),
        generation_verdict: est::verdict(estimate.generation_bytes, ram),
        estimate,
    }
}

/// Step a plan down the guide's ladder until it fits: checkpointing, then
/// batch (to the largest that fits), then sequence length (halving to 512),
/// then LoRA layers (halving to 4).
fn fit(m: &ModelInfo, a: &Assessment, cap_batch: u64, ram: u64) -> Assessment {
    let mut plan = a.plan;
    let weights = a.estimate.weights_bytes;
    let try_plan = |p: Plan| est::verdict(est::estimate(&m.shape, weights, &p).training_bytes, ram);
    plan.batch_size = plan.batch_size.min(cap_batch).max(1);
    if try_plan(plan) != Verdict::Fits {
        plan.grad_checkpoint = true;
    }
    if let Some(b) = est::max_batch(&m.shape, weights, &plan, ram, plan.batch_size) {
        plan.batch_size = b;
    } else {
        plan.batch_size = 1;
        while try_plan(plan) != Verdict::Fits && plan.max_seq_length > 512 {
            plan.max_seq_length = (plan.max_seq_length / 2).max(512);
        }
        while try_plan(plan) != Verdict::Fits && plan.lora_layers > 4 {
            plan.lora_layers = (plan.lora_layers / 2).max(4);
        }
    }
    assess(m, a.bits, a.group_size, plan, ram)
}

/// The whole answer, from data only.
pub fn advise(
    machine: Machine,
    model: Option<ModelInfo>,
    c: &Checked,
    cmd: Option<&TrainFlags>,
) -> Report {
    let ram = machine.total_bytes;
    let tier = *est::tier(ram);
    let mut notes = Vec::new();
    if ram.div_ceil(est::GIB) < 16 {
        notes.push(
            "less RAM than the guide's smallest (16 GB) tier: its 16 GB advice is optimistic here"
                .into(),
        );
    }
    if machine.chip_info.is_none() {
        notes.push(match &machine.chip {
            Some(c) => {
                format!("chip '{c}' is not in the guide's table: no bandwidth or practical limit")
            }
            None => "chip unknown: no bandwidth or practical limit".into(),
        });
    }
    let mut report = Report {
        tier,
        model: None,
        sizes: None,
        requested: None,
        guide_batch_size: None,
        max_batch_size: None,
        max_seq_length: None,
        recommended: None,
        command: None,
        checklist: Vec::new(),
        notes,
        gpu_wired: None,
        machine,
    };
    let Some(m) = model else {
        if let Some(f) = cmd {
            report.checklist = checklist(&tier, c, f.quantized, None);
        }
        return report;
    };
    let bits = c.bits.or(m.quantization.map(|q| q.bits)).unwrap_or(16);
    let group = c
        .group_size
        .or(m.quantization.map(|q| q.group_size))
        .unwrap_or(64);
    let requested = assess(&m, bits, group, c.plan, ram);
    let model_gb = requested.estimate.weights_bytes as f64 / GB;
    let guide_batch = est::guide_batch_size(model_gb, ram as f64 / est::GIB as f64);
    // The tier's settings cap the plan (below 64 GB; "64GB+" lifts the caps),
    // then the ladder steps it down until the estimate fits.
    let mut start = requested.clone();
    start.plan.grad_checkpoint |= tier.grad_checkpoint;
    if tier.ram_gb < 64 {
        start.plan.max_seq_length = start.plan.max_seq_length.min(tier.max_seq_length.1);
        start.plan.lora_layers = start.plan.lora_layers.min(tier.lora_layers.1);
    }
    let cap = guide_batch.min(tier.batch_size.1).min(c.plan.batch_size);
    let recommended = fit(&m, &start, cap, ram);
    let rp = recommended.plan;
    let w = requested.estimate.weights_bytes;
    report.max_batch_size = est::max_batch(&m.shape, w, &rp, ram, 64);
    report.max_seq_length = est::max_seq(&m.shape, w, &rp, ram, 32768);
    if recommended.verdict != Verdict::Fits && bits > 4 {
        let four = assess(&m, 4, 64, rp, ram);
        report.notes.push(format!(
            "at {bits}-bit this {}; a 4-bit model (mlx_lm.convert --quantize --q-bits 4 --q-group-size 64) {}",
            recommended.verdict.as_str(),
            four.verdict.as_str()
        ));
    }
    if !tier.bits.contains(&bits) {
        report.notes.push(format!(
            "the guide's {} GB tier: {}; this is {bits}-bit",
            tier.ram_gb, tier.models
        ));
    }
    if c.plan.lora_rank != est::LORA_RANK {
        report.notes.push(format!(
            "mlx_lm.lora takes the LoRA rank from a config file: -c config.yaml with lora_parameters: {{rank: {}}}",
            c.plan.lora_rank
        ));
    }
    let mut cmdline = format!(
        "mlx_lm.lora --model {} --train --data data --batch-size {} --max-seq-length {} --num-layers {}",
        m.name, rp.batch_size, rp.max_seq_length, rp.lora_layers
    );
    if rp.grad_checkpoint {
        cmdline.push_str(" --grad-checkpoint");
    }
    report.checklist = checklist(&tier, c, bits <= 8, Some(&recommended));
    report.sizes = Some(Sizes {
        params: m.params,
        fp16_gb: est::naive_size_gb(m.params, 16),
        int8_gb: est::naive_size_gb(m.params, 8),
        int4_gb: est::naive_size_gb(m.params, 4),
        int8_g64_gb: m.params * est::bits_per_weight(8, 64) / 8.0 / GB,
        int4_g64_gb: m.params * est::bits_per_weight(4, 64) / 8.0 / GB,
    });
    report.guide_batch_size = Some(guide_batch);
    if let Some(g) = &report.machine.gpu_wired {
        let need = crate::model::Bytes(recommended.estimate.training_bytes);
        let limit = crate::model::Bytes(g.limit_bytes);
        report.gpu_wired = crate::wired::advise(limit, g.safe_limit_mb, need).text(need, limit);
    }
    report.command = (recommended.verdict != Verdict::DoesNotFit).then_some(cmdline);
    report.requested = Some(requested);
    report.recommended = Some(recommended);
    report.model = Some(m);
    report
}

/// The guide's "Memory Optimization Checklist", its first five items,
/// against the planned run and (when there is an estimate) the plan that fits.
fn checklist(
    tier: &Tier,
    c: &Checked,
    quantized: bool,
    rec: Option<&Assessment>,
) -> Vec<CheckItem> {
    let p = c.plan;
    let (batch, seq, layers) = match rec {
        Some(r) => (r.plan.batch_size, r.plan.max_seq_length, r.plan.lora_layers),
        None => (tier.batch_size.1, tier.max_seq_length.1, tier.lora_layers.1),
    };
    let ckpt_needed = rec.map_or(tier.grad_checkpoint, |r| r.plan.grad_checkpoint);
    let within = |have: u64, max: u64, flag: &str| {
        if have <= max {
            format!("{flag} {have}")
        } else {
            format!("{flag} {have}: use {max} or less")
        }
    };
    vec![
        CheckItem {
            item: "quantized model (4-bit or 8-bit)",
            ok: quantized,
            detail: if quantized {
                "quantized".into()
            } else {
                format!("not quantized; this tier: {}", tier.models)
            },
        },
        CheckItem {
            item: "gradient checkpointing",
            ok: p.grad_checkpoint || !ckpt_needed,
            detail: if p.grad_checkpoint {
                "--grad-checkpoint".into()
            } else if ckpt_needed {
                "add --grad-checkpoint".into()
            } else {
                "not needed here".into()
            },
        },
        CheckItem {
            item: "batch size",
            ok: p.batch_size <= batch,
            detail: within(p.batch_size, batch, "--batch-size"),
        },
        CheckItem {
            item: "sequence length",
            ok: p.max_seq_length <= seq,
            detail: within(p.max_seq_length, seq, "--max-seq-length"),
        },
        CheckItem {
            item: "LoRA layers",
            ok: p.lora_layers <= layers,
            detail: within(p.lora_layers, layers, "--num-layers"),
        },
    ]
}

/// The model `--model` or a `--cmd`'s `--model` names, when advise can
/// size it: a folder, a known name, or a size in its name
/// ("mlx-community/Mistral-7B-v0.1-4bit" → 7B, 4-bit). `--model` and
/// `--cmd` read names through this one rule.
pub(super) fn model_from_name(name: &str) -> Result<(Option<ModelInfo>, Option<u32>), Error> {
    if std::path::Path::new(name).is_dir() {
        return model::resolve(name).map(|m| (Some(m), None));
    }
    let bits = crate::cmdline::bits_in_name(name);
    let base = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    match model::resolve(base) {
        Ok(m) => Ok((Some(m), bits)),
        // A size that is no size ("-7B") is bad input, not a name to read
        // a size out of.
        Err(e @ Error::Data(_)) => Err(e),
        Err(_) => Ok((
            crate::cmdline::size_in_name(base)
                .and_then(|p| model::resolve(&format!("{}B", p / 1e9)).ok())
                .map(|mut m| {
                    m.name = name.to_string();
                    m
                }),
            bits,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(gb: u64) -> Machine {
        Machine {
            chip: Some("Apple M1".into()),
            chip_info: super::super::machine::chip_info("Apple M1"),
            total_bytes: gb * est::GIB,
            available_bytes: gb * est::GIB / 2,
            level: "green".into(),
            gpu_wired: None,
        }
    }

    /// A Mac whose GPU wired limit is `limit_mb` (0: the default).
    fn mac_wired(gb: u64, limit_mb: u64) -> Machine {
        let total = crate::model::Bytes::gib(gb);
        let lines = crate::classify::Lines {
            yellow: crate::model::Bytes::gib(4),
            ..Default::default()
        };
        Machine {
            gpu_wired: Some(super::super::machine::GpuWired {
                limit_mb,
                limit_bytes: crate::wired::effective_limit(total, limit_mb).0,
                safe_limit_mb: crate::wired::safe_limit_mb(total, &lines),
            }),
            ..mac(gb)
        }
    }

    /// mlx_lm's defaults at 4-bit.
    fn four_bit() -> Checked {
        check(
            &Request {
                bits: Some(4),
                ..Default::default()
            },
            None,
        )
        .expect("4-bit")
    }

    /// The N of `sudo sysctl iogpu.wired_limit_mb=N` in an advice line.
    fn sysctl_mb(line: &str) -> Option<u64> {
        line.split("sudo sysctl iogpu.wired_limit_mb=")
            .nth(1)
            .and_then(|t| t.split('`').next())
            .and_then(|n| n.parse().ok())
    }

    #[test]
    fn the_wired_limit_line_only_within_the_headroom() {
        let m = model::resolve("llama-7b").expect("named");
        let c4 = four_bit();
        // Linux (no limit known): no line.
        assert_eq!(advise(mac(16), Some(m.clone()), &c4, None).gpu_wired, None);
        // A 16 GiB Mac whose limit someone lowered to 2 GiB: raise it, within 12 GiB.
        let r = advise(mac_wired(16, 2048), Some(m.clone()), &c4, None);
        let need = r.recommended.as_ref().expect("rec").estimate.training_bytes;
        assert!(need > 2 * est::GIB && need <= 12 * est::GIB, "{need}");
        let line = r.gpu_wired.expect("a line");
        let mb = sysctl_mb(&line).expect("a sysctl line");
        assert!(mb * 1024 * 1024 >= need && mb <= 12 * 1024, "{line}");
        assert!(line.contains("resets at reboot"), "{line}");
        // FP16 on the same Mac needs more than 16 − 4 GiB: no limit advised.
        let c16 = check(&Request::default(), None).expect("defaults");
        let r = advise(mac_wired(16, 0), Some(m.clone()), &c16, None);
        let line = r.gpu_wired.expect("a line");
        assert!(
            line.contains("no wired limit makes it fit safely"),
            "{line}"
        );
        assert!(!line.contains("sudo"), "{line}");
        // A limit already above the estimate: no line.
        assert_eq!(
            advise(mac_wired(64, 62 * 1024), Some(m.clone()), &c4, None).gpu_wired,
            None
        );
        // At the default (48 GiB) a 64 GiB Mac's plan (the caps lifted) needs
        // more: the line never goes above 64 − 4 GiB.
        let r = advise(mac_wired(64, 0), Some(m), &c4, None);
        let need = r.recommended.as_ref().expect("rec").estimate.training_bytes;
        if need > 48 * est::GIB {
            let line = r.gpu_wired.expect("a line");
            let mb = sysctl_mb(&line).expect("a sysctl line");
            assert!(mb * 1024 * 1024 >= need && mb <= 60 * 1024, "{line}");
        }
    }

    #[test]
    fn bad_flags_are_data_errors() {
        for req in [
            Request {
                bits: Some(3),
                ..Default::default()
            },
            Request {
                group_size: Some(7),
                ..Default::default()
            },
            Request {
                batch_size: Some(-1),
                ..Default::default()
            },
            Request {
                max_seq_length: Some(0),
                ..Default::default()
            },
        ] {
            let e = check(&req, None).expect_err("rejected");
            assert_eq!(e.exit_code(), 65, "{e}");
        }
    }

    #[test]
    fn llama_7b_on_a_16_gb_mac() {
        let m = model::resolve("llama-7b").expect("named");
        let c = check(&Request::default(), None).expect("defaults");
        // FP16 with mlx_lm's defaults does not fit 16 GB; the note offers 4-bit.
        let r = advise(mac(16), Some(m.clone()), &c, None);
        assert_eq!(
            r.requested.as_ref().map(|a| a.verdict),
            Some(Verdict::DoesNotFit)
        );
        // Stepped down to batch 1, it is only tight: 14 GB of weights in 16 GiB.
        assert_eq!(
            r.recommended.as_ref().map(|a| a.verdict),
            Some(Verdict::Tight)
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("4-bit model") && n.ends_with("fits")),
            "{:?}",
            r.notes
        );
        // At 4-bit: fits once stepped down, with checkpointing.
        let c4 = four_bit();
        let r = advise(mac(16), Some(m), &c4, None);
        let rec = r.recommended.as_ref().expect("recommended");
        assert_eq!(rec.verdict, Verdict::Fits);
        assert!(rec.plan.grad_checkpoint);
        // 3.94 GB of weights (4.5 bits/weight): free 8 < 1.5 × 5.9, so batch 1.
        assert_eq!(r.guide_batch_size, Some(1));
        let cmd = r.command.expect("a command");
        assert!(
            cmd.starts_with("mlx_lm.lora --model llama-7b --train"),
            "{cmd}"
        );
        assert!(cmd.ends_with("--grad-checkpoint"), "{cmd}");
        assert!(
            !r.checklist[1].ok,
            "checkpointing is missing: {:?}",
            r.checklist[1]
        );
    }

    #[test]
    fn model_and_cmd_read_a_name_with_a_size_through_one_rule() {
        // Issue 19: `--model mlx-community/…-70B-…-4bit` was "no such model
        // folder" while `--cmd "… --model <the same name>"` sized it.
        let name = "mlx-community/Llama-3.3-70B-Instruct-4bit";
        let (m, bits) = model_from_name(name).expect("sized");
        let m = m.expect("a model");
        assert_eq!((m.params, bits, m.name.as_str()), (70e9, Some(4), name));
        let flags = TrainFlags::from_cmdline(&format!("mlx_lm.lora --model {name}"));
        let (c, cbits) = model_from_name(flags.model.as_deref().expect("--model")).expect("sized");
        assert_eq!((c.map(|c| c.params), cbits), (Some(70e9), Some(4)));
        // A name with no size in it is not guessed at.
        assert_eq!(model_from_name("org/some-model").expect("no error").0, None);
    }

    #[test]
    fn the_largest_batch_line_says_where_it_holds() {
        let m = model::resolve("llama-7b").expect("named");
        let c = check(&Request::default(), None).expect("defaults");
        let r = advise(mac(32), Some(m), &c, None);
        let rec = r.recommended.as_ref().expect("recommended").plan;
        let text = super::super::render::render(&r);
        let line = text
            .lines()
            .find(|l| l.starts_with("batch:"))
            .expect("a batch line");
        let ckpt = if rec.grad_checkpoint {
            "grad checkpoint"
        } else {
            "no grad checkpoint"
        };
        assert!(
            line.contains(&format!(
                "(at seq {}, {} layers, {ckpt})",
                rec.max_seq_length, rec.lora_layers
            )) && line.contains(&format!("(at batch {}, {ckpt})", rec.batch_size)),
            "{line}"
        );
        assert!(text.ends_with('\n'), "the last line ends with its newline");
    }

    #[test]
    fn no_model_is_the_machine_only() {
        let c = check(&Request::default(), None).expect("defaults");
        let r = advise(mac(32), None, &c, None);
        assert_eq!(r.tier.ram_gb, 32);
        assert!(r.requested.is_none() && r.checklist.is_empty());
        let text = super::super::render::render(&r);
        assert!(
            text.contains("guide: 200 GB/s, practical limit 7B models; Apple: 68.25 GB/s"),
            "{text}"
        );
    }
}
