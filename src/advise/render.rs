//! The text form of `headroom advise`'s report, for a person.

use super::estimate::GB;
use super::report::Report;
use std::fmt::Write as _;

fn gb(b: u64) -> String {
    format!("{:.1} GB", b as f64 / GB)
}

/// The report as text. Model names and sources come from the user's folder,
/// `config.json` or a pasted command line: the whole text goes through the
/// one rule of src/text.rs (line breaks kept).
pub fn render(r: &Report) -> String {
    crate::text::lines(&render_raw(r))
}

fn render_raw(r: &Report) -> String {
    let mut o = String::new();
    let m = &r.machine;
    let _ = writeln!(o, "chip:      {}", m.chip.as_deref().unwrap_or("unknown"));
    match &m.chip_info {
        Some(i) => {
            let bw = |v: Option<f64>| v.map_or("not listed".into(), |v| format!("{v} GB/s"));
            let _ = writeln!(
                o,
                "           guide: {}, practical limit {}; Apple: {}",
                bw(i.guide_bandwidth_gbps),
                i.guide_practical_limit.unwrap_or("not listed"),
                bw(i.apple_bandwidth_gbps)
            );
        }
        None => {
            let _ = writeln!(
                o,
                "           not in the guide's table (no bandwidth or model limit)"
            );
        }
    }
    let _ = writeln!(
        o,
        "memory:    {} total, {} available now ({})",
        gb(m.total_bytes),
        gb(m.available_bytes),
        m.level
    );
    let t = &r.tier;
    let _ = writeln!(
        o,
        "tier:      {} GB: {}, batch {}–{}, seq {}–{}, LoRA layers {}–{}{}",
        t.ram_gb,
        t.models,
        t.batch_size.0,
        t.batch_size.1,
        t.max_seq_length.0,
        t.max_seq_length.1,
        t.lora_layers.0,
        t.lora_layers.1,
        if t.grad_checkpoint {
            ", grad checkpoint"
        } else {
            ""
        }
    );
    let _ = writeln!(o, "           e.g. {}", t.example);
    if let (Some(model), Some(s)) = (&r.model, &r.sizes) {
        let _ = writeln!(
            o,
            "model:     {} ({}, {:.2}B params)",
            model.name,
            model.source,
            s.params / 1e9
        );
        if let Some(d) = model.disk_bytes {
            let q = model.quantization.map_or("not quantized".into(), |q| {
                format!("{}-bit, group {}", q.bits, q.group_size)
            });
            let _ = writeln!(
                o,
                "           {} on disk in {} safetensors, {q}",
                gb(d),
                model.safetensors_files
            );
        }
        let _ = writeln!(
            o,
            "sizes:     FP16 {:.1} GB, INT8 {:.1} GB, INT4 {:.1} GB (guide); with group-64 scales: INT8 {:.1} GB, INT4 {:.1} GB",
            s.fp16_gb, s.int8_gb, s.int4_gb, s.int8_g64_gb, s.int4_g64_gb
        );
    }
    for (label, a) in [("requested", &r.requested), ("advised", &r.recommended)] {
        let Some(a) = a else { continue };
        let e = &a.estimate;
        let p = &a.plan;
        let _ = writeln!(
            o,
            "{label:<10} batch {} seq {} layers {} rank {}{}: {} — weights {} ({}-bit, {} bits/weight) + LoRA {} + activations {} = {}; generation {} (KV {})",
            p.batch_size,
            p.max_seq_length,
            p.lora_layers,
            p.lora_rank,
            if p.grad_checkpoint { " ckpt" } else { "" },
            a.verdict.as_str().to_uppercase(),
            gb(e.weights_bytes),
            a.bits,
            a.bits_per_weight,
            gb(e.lora_state_bytes),
            gb(e.activations_bytes),
            gb(e.training_bytes),
            a.generation_verdict.as_str(),
            gb(e.kv_cache_bytes)
        );
    }
    if let Some(b) = r.guide_batch_size {
        let largest = |v: Option<u64>| v.map_or("none".into(), |v| v.to_string());
        // Both hold with the advised plan's other settings: say which.
        let (at_seq, at_batch) = match &r.recommended {
            Some(a) => {
                let p = &a.plan;
                let ckpt = if p.grad_checkpoint {
                    "grad checkpoint"
                } else {
                    "no grad checkpoint"
                };
                (
                    format!(
                        " (at seq {}, {} layers, {ckpt})",
                        p.max_seq_length, p.lora_layers
                    ),
                    format!(" (at batch {}, {ckpt})", p.batch_size),
                )
            }
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            o,
            "batch:     guide's rule {b}; largest that fits {}{at_seq}; largest seq {}{at_batch}",
            largest(r.max_batch_size),
            largest(r.max_seq_length)
        );
    }
    if let Some(c) = &r.command {
        let _ = writeln!(o, "run:       {c}");
    }
    if let Some(w) = &r.gpu_wired {
        let _ = writeln!(o, "GPU wired: {w}");
    }
    if !r.checklist.is_empty() {
        let _ = writeln!(o, "checklist:");
        for c in &r.checklist {
            let _ = writeln!(
                o,
                "  [{}] {}: {}",
                if c.ok { "x" } else { " " },
                c.item,
                c.detail
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(o, "note:      {n}");
    }
    o
}
