//! Pure sizing arithmetic: the guide's table and batch-size rule, and
//! headroom's estimates of weights, LoRA state, activations and KV cache.
//! No I/O; every formula is explained in docs/advise.md.

use serde::Serialize;

/// The guide's "GB": decimal (7B at FP16 = 14 GB).
pub const GB: f64 = 1e9;
pub const GIB: u64 = 1 << 30;

/// mlx_lm.lora's defaults (mlx_lm/lora.py `CONFIG_DEFAULTS`); those a
/// command line can set are read with it, in `crate::cmdline`.
pub use crate::cmdline::{LORA_BATCH_SIZE, LORA_MAX_SEQ_LENGTH, LORA_NUM_LAYERS};
pub const LORA_RANK: u64 = 8;

/// The guide, "Leave Headroom": keep 2–4 GB free for the system. Below the
/// upper end is "tight", below the lower end "does not fit".
pub const KEEP_FREE_FITS: u64 = 4 * GIB;
pub const KEEP_FREE_TIGHT: u64 = 2 * GIB;
/// The guide's batch-size rule: "Reserve 8GB for system".
pub const BATCH_RULE_RESERVE_GB: f64 = 8.0;

/// The guide's quick reference: params × bits / 8 bytes, in its GB.
pub fn naive_size_gb(params: f64, bits: u32) -> f64 {
    params * f64::from(bits) / 8.0 / GB
}

/// Bits per weight as stored by MLX's affine quantization: `bits` per
/// weight plus one fp16 scale and one fp16 bias per `group_size` weights
/// (4-bit, group 64 → 4.5). Unquantized (16) has no groups.
pub fn bits_per_weight(bits: u32, group_size: u32) -> f64 {
    if bits >= 16 || group_size == 0 {
        return f64::from(bits);
    }
    f64::from(bits) + 32.0 / f64::from(group_size)
}

/// The guide's `get_optimal_batch_size(model_size_gb, ram_gb)`, verbatim:
/// free = RAM − 8; overhead = 1.5 × model; 4 if free > 2 × overhead, 2 if
/// free > 1.5 × overhead, else 1.
pub fn guide_batch_size(model_size_gb: f64, ram_gb: f64) -> u64 {
    let free_ram = ram_gb - BATCH_RULE_RESERVE_GB;
    let model_overhead = model_size_gb * 1.5;
    if free_ram > model_overhead * 2.0 {
        4
    } else if free_ram > model_overhead * 1.5 {
        2
    } else {
        1
    }
}

/// A transformer's shape, enough to size LoRA adapters, activations and
/// the KV cache.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shape {
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    /// Bytes of one activation (and KV-cache) element: the model's compute
    /// dtype. 4 for float32 weights; 2 for float16/bfloat16 and for
    /// quantized models (their scales' dtype).
    pub activation_bytes: u64,
}

impl Shape {
    /// A Llama-like shape for `params` parameters when only the size is
    /// known: params ≈ 12·L·h² with h = 128·L (Llama-7B: h 4096, L 32),
    /// h rounded to 128, heads of 128, MLP 8/3·h, vocab 32000.
    pub fn guess(params: f64) -> Shape {
        let h = ((params.max(1e6) * 128.0 / 12.0).cbrt() / 128.0)
            .round()
            .max(1.0) as u64
            * 128;
        let layers = (params / (12.0 * (h * h) as f64)).round().max(1.0) as u64;
        Shape {
            hidden_size: h,
            num_hidden_layers: layers,
            num_attention_heads: h / 128,
            num_key_value_heads: h / 128,
            intermediate_size: h * 8 / 3,
            vocab_size: 32000,
            activation_bytes: 2,
        }
    }

    /// Activation elements a trained block keeps per token for the
    /// backward pass: its input, the normed input, q, k, v, q and k after
    /// RoPE, the attention output, the residual sum and its norm (6h + 4kv),
    /// and the MLP's gate, up, silu(gate) and their product (4i).
    pub fn block_elements_per_token(&self) -> u64 {
        6 * self.hidden_size + 4 * self.kv_dim() + 4 * self.intermediate_size
    }

    fn kv_dim(&self) -> u64 {
        self.hidden_size * self.num_key_value_heads / self.num_attention_heads.max(1)
    }

    /// Parameters of one LoRA-adapted block: rank × (in + out) summed over
    /// its seven linears (q, k, v, o, gate, up, down).
    pub fn lora_params_per_layer(&self, rank: u64) -> u64 {
        let h = self.hidden_size;
        let kv = self.kv_dim();
        let i = self.intermediate_size;
        rank * (2 * h + 2 * (h + kv) + 2 * (h + i) + (i + h))
    }
}

/// A planned fine-tuning (or generation) run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub batch_size: u64,
    pub max_seq_length: u64,
    pub lora_layers: u64,
    pub lora_rank: u64,
    pub grad_checkpoint: bool,
}

/// Bytes per trainable parameter: fp32 weight + fp32 gradient + Adam's two
/// fp32 moments.
pub const BYTES_PER_TRAINABLE: u64 = 4 + 4 + 8;

// The activation model below was fitted to MLX's own peak
// (`mx.get_peak_memory()`) of the real `mlx_lm.lora` on generated models
// (bench/advise-calibration; the table and the reasoning are in
// docs/advise.md). Every count is in activation elements, each of
// `Shape::activation_bytes` bytes.

/// Tensors of b·s × V alive at once at the peak, in the backward pass of
/// the loss: the logits, their softmax (the gradient of logsumexp), the
/// scattered one-hot of the targets, and the gradient being summed.
pub const LOGIT_COPIES: u64 = 4;
/// What a trained block keeps for the backward pass, as a multiple of
/// `Shape::block_elements_per_token`: 3/2 (the fit: the kept tensors plus
/// the temporaries of the block being differentiated).
pub const BLOCK_NUM: u64 = 3;
pub const BLOCK_DEN: u64 = 2;
/// Attention probabilities (b × heads × s × s) a trained block keeps for the
/// backward pass. MLX's fused attention is not used while tracing gradients
/// (`use_fallback` is true under `in_grad_tracing`), so training pays for
/// the s × s matrices.
pub const SCORE_COPIES: u64 = 1;
/// float32 b × heads × s × s tensors alive while one block's attention is
/// differentiated (the gradients of the probabilities and of the scores,
/// and the softmax's product). float32 in every model: LoRA's A and B are
/// float32, so the gradient flowing back through a trained block is.
pub const SCORE_GRAD_COPIES: u64 = 3;
pub const SCORE_GRAD_BYTES: u64 = 4;
/// With `--grad-checkpoint`, each trained block keeps its input (h per
/// token); one block at a time is recomputed in full.
pub const CKPT_PER_TOKEN_PER_H: u64 = 1;

/// Every estimate for one plan, in bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub weights_bytes: u64,
    pub lora_params: u64,
    pub lora_state_bytes: u64,
    pub activations_bytes: u64,
    pub activations_no_checkpoint_bytes: u64,
    pub activations_checkpoint_bytes: u64,
    pub training_bytes: u64,
    pub kv_cache_bytes: u64,
    pub generation_bytes: u64,
}

/// Activation memory of a LoRA run, in bytes; docs/advise.md explains
/// each term. Only the trained blocks (the last `lora_layers`) keep
/// activations for the backward pass; frozen blocks below them need none.
///
/// t = b·s tokens, a = activation bytes, n trained blocks, B =
/// `Shape::block_elements_per_token`, S = heads·s (one token's row of the
/// attention matrices):
/// - without checkpointing: a·t·(4V + n·(3B/2 + S)) + 4·t·3S
/// - with checkpointing: a·t·(4V + n·h + 3B/2 + S) + 4·t·3S
///   (one block recomputed at a time).
pub fn activations(shape: &Shape, plan: &Plan, checkpoint: bool) -> u64 {
    let tokens = plan.batch_size.saturating_mul(plan.max_seq_length);
    let bytes = |elements: u64, each: u64| tokens.saturating_mul(elements).saturating_mul(each);
    let a = shape.activation_bytes;
    let layers = plan.lora_layers.min(shape.num_hidden_layers);
    let row = shape
        .num_attention_heads
        .saturating_mul(plan.max_seq_length);
    let kept = (shape.block_elements_per_token() * BLOCK_NUM / BLOCK_DEN)
        .saturating_add(row.saturating_mul(SCORE_COPIES));
    let blocks = if checkpoint {
        let saved = bytes(CKPT_PER_TOKEN_PER_H * shape.hidden_size, a);
        saved.saturating_mul(layers).saturating_add(bytes(kept, a))
    } else {
        bytes(kept, a).saturating_mul(layers)
    };
    let score_grads = bytes(row.saturating_mul(SCORE_GRAD_COPIES), SCORE_GRAD_BYTES);
    let logits = bytes(shape.vocab_size.saturating_mul(LOGIT_COPIES), a);
    blocks.saturating_add(score_grads).saturating_add(logits)
}

/// KV cache for generating `tokens` tokens in a batch: keys and values,
/// in the activation dtype, for every layer's key/value heads.
pub fn kv_cache(shape: &Shape, batch: u64, tokens: u64) -> u64 {
    2 * shape.num_hidden_layers
        * shape.kv_dim()
        * shape.activation_bytes
        * batch.saturating_mul(tokens)
}

pub fn estimate(shape: &Shape, weights_bytes: u64, plan: &Plan) -> Estimate {
    let layers = plan.lora_layers.min(shape.num_hidden_layers);
    let lora_params = shape.lora_params_per_layer(plan.lora_rank) * layers;
    let lora_state_bytes = lora_params * BYTES_PER_TRAINABLE;
    let no_ckpt = activations(shape, plan, false);
    let ckpt = activations(shape, plan, true);
    let acts = if plan.grad_checkpoint { ckpt } else { no_ckpt };
    let kv = kv_cache(shape, 1, plan.max_seq_length);
    Estimate {
        weights_bytes,
        lora_params,
        lora_state_bytes,
        activations_bytes: acts,
        activations_no_checkpoint_bytes: no_ckpt,
        activations_checkpoint_bytes: ckpt,
        training_bytes: weights_bytes
            .saturating_add(lora_state_bytes)
            .saturating_add(acts),
        kv_cache_bytes: kv,
        generation_bytes: weights_bytes.saturating_add(kv),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fits,
    Tight,
    DoesNotFit,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fits => "fits",
            Verdict::Tight => "tight",
            Verdict::DoesNotFit => "does not fit",
        }
    }
}

/// Fits with 4 GB to spare, tight with 2–4 GB, else does not fit.
pub fn verdict(need: u64, ram: u64) -> Verdict {
    if need.saturating_add(KEEP_FREE_FITS) <= ram {
        Verdict::Fits
    } else if need.saturating_add(KEEP_FREE_TIGHT) <= ram {
        Verdict::Tight
    } else {
        Verdict::DoesNotFit
    }
}

/// The largest batch (≤ `cap`) whose training estimate fits with the
/// guide's 4 GB to spare; `None` when not even batch 1 does.
pub fn max_batch(shape: &Shape, weights: u64, plan: &Plan, ram: u64, cap: u64) -> Option<u64> {
    (1..=cap).rev().find(|b| {
        let p = Plan {
            batch_size: *b,
            ..*plan
        };
        verdict(estimate(shape, weights, &p).training_bytes, ram) == Verdict::Fits
    })
}

/// The largest sequence length (≤ `cap`, a multiple of 128) that fits at
/// the plan's batch size.
pub fn max_seq(shape: &Shape, weights: u64, plan: &Plan, ram: u64, cap: u64) -> Option<u64> {
    let fits = |s: u64| {
        let p = Plan {
            max_seq_length: s,
            ..*plan
        };
        verdict(estimate(shape, weights, &p).training_bytes, ram) == Verdict::Fits
    };
    let (mut lo, mut hi) = (0u64, cap / 128);
    if hi == 0 || !fits(128) {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid * 128) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo * 128)
}

/// The guide's "Memory-Efficient Workflows", one per RAM tier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tier {
    pub ram_gb: u64,
    pub models: &'static str,
    pub bits: &'static [u32],
    pub batch_size: (u64, u64),
    pub max_seq_length: (u64, u64),
    pub lora_layers: (u64, u64),
    pub grad_checkpoint: bool,
    pub example: &'static str,
}

pub const TIERS: [Tier; 3] = [
    Tier {
        ram_gb: 16,
        models: "4-bit models only",
        bits: &[4],
        batch_size: (1, 1),
        max_seq_length: (512, 1024),
        lora_layers: (4, 8),
        grad_checkpoint: true,
        example: "mlx_lm.lora --model llama-7b-4bit --batch-size 1 --grad-checkpoint --num-layers 4 --max-seq-length 512",
    },
    Tier {
        ram_gb: 32,
        models: "4-bit for 13B, 8-bit for 7B",
        bits: &[4, 8],
        batch_size: (2, 4),
        max_seq_length: (1024, 2048),
        lora_layers: (8, 16),
        grad_checkpoint: true,
        example: "mlx_lm.lora --model llama-13b-4bit --batch-size 2 --grad-checkpoint --num-layers 8 --max-seq-length 1024",
    },
    Tier {
        ram_gb: 64,
        models: "30B models in 4-bit",
        bits: &[4, 8, 16],
        batch_size: (4, 8),
        max_seq_length: (2048, 2048),
        lora_layers: (16, 16),
        grad_checkpoint: false,
        example: "mlx_lm.lora --model llama-30b-4bit --batch-size 4 --num-layers 16 --max-seq-length 2048",
    },
];

/// The largest tier at or below this RAM (GiB, as Macs are sold); below
/// 16 GB the 16 GB tier, which is then an optimistic floor.
pub fn tier(ram_bytes: u64) -> &'static Tier {
    let gb = ram_bytes.div_ceil(GIB);
    TIERS
        .iter()
        .rev()
        .find(|t| gb >= t.ram_gb)
        .unwrap_or(&TIERS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guides_table_with_the_naive_formula() {
        // guides/memory-optimization.md, "Real-World Examples".
        let table: &[(f64, [f64; 3])] = &[
            (7e9, [14.0, 7.0, 3.5]),
            (13e9, [26.0, 13.0, 6.5]),
            (30e9, [60.0, 30.0, 15.0]),
            (70e9, [140.0, 70.0, 35.0]),
            (253e9, [506.0, 253.0, 126.0]),
        ];
        for (params, want) in table {
            for (bits, gb) in [16, 8, 4].iter().zip(want) {
                let got = naive_size_gb(*params, *bits);
                // The guide rounds 126.5 down to 126.
                assert!(
                    (got - gb).abs() <= 0.5,
                    "{params} at {bits} bits: {got} vs {gb}"
                );
            }
        }
    }

    #[test]
    fn group_overhead_refines_the_table() {
        assert_eq!(bits_per_weight(4, 64), 4.5);
        assert_eq!(bits_per_weight(4, 32), 5.0);
        assert_eq!(bits_per_weight(8, 64), 8.5);
        assert_eq!(bits_per_weight(16, 64), 16.0);
        // Refined column of docs/advise.md: params × bpw / 8.
        let refined = |p: f64, b, g| p * bits_per_weight(b, g) / 8.0 / GB;
        let rows: &[(f64, f64, f64)] = &[
            (7e9, 7.4375, 3.9375),
            (13e9, 13.8125, 7.3125),
            (30e9, 31.875, 16.875),
            (70e9, 74.375, 39.375),
            (253e9, 268.8125, 142.3125),
        ];
        for (p, int8, int4) in rows {
            assert!((refined(*p, 8, 64) - int8).abs() < 1e-9, "{p}");
            assert!((refined(*p, 4, 64) - int4).abs() < 1e-9, "{p}");
        }
    }

    #[test]
    fn the_guides_batch_size_rule_over_a_grid() {
        let rams = [8.0, 16.0, 24.0, 32.0, 64.0, 128.0, 192.0];
        // Cells computed by running the guide's Python function itself.
        let grid: &[(f64, [u64; 7])] = &[
            (0.5, [1, 4, 4, 4, 4, 4, 4]),
            (2.0, [1, 4, 4, 4, 4, 4, 4]),
            (3.5, [1, 2, 4, 4, 4, 4, 4]),
            (4.5, [1, 1, 4, 4, 4, 4, 4]),
            (7.0, [1, 1, 2, 4, 4, 4, 4]),
            (14.0, [1, 1, 1, 1, 4, 4, 4]),
            (35.0, [1, 1, 1, 1, 1, 4, 4]),
            (50.0, [1, 1, 1, 1, 1, 2, 4]),
            (60.0, [1, 1, 1, 1, 1, 1, 4]),
            (140.0, [1, 1, 1, 1, 1, 1, 1]),
        ];
        for (model, want) in grid {
            for (ram, w) in rams.iter().zip(want) {
                assert_eq!(
                    guide_batch_size(*model, *ram),
                    *w,
                    "model {model} GB, RAM {ram} GB"
                );
            }
        }
        // Boundaries are strict (">"): 16 GB RAM, free 8, model 8/3 → 2·o = 8.
        assert_eq!(guide_batch_size(8.0 / 3.0, 16.0), 2);
    }

    #[test]
    fn guessed_shapes_are_llama_like() {
        let s = Shape::guess(7e9);
        assert_eq!(s.hidden_size, 4224);
        assert_eq!(s.num_hidden_layers, 33);
        let s = Shape::guess(70e9);
        assert!((8000..=9200).contains(&s.hidden_size), "{s:?}");
    }

    fn llama7b() -> Shape {
        Shape {
            hidden_size: 4096,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 32,
            intermediate_size: 11008,
            vocab_size: 32000,
            activation_bytes: 2,
        }
    }

    #[test]
    fn estimates_for_llama_7b() {
        let s = llama7b();
        // LoRA per block at rank 8: 8 × (2·4096 + 2·8192 + 2·15104 + 15104) = 559 104.
        assert_eq!(s.lora_params_per_layer(8), 559_104);
        let plan = Plan {
            batch_size: 1,
            max_seq_length: 512,
            lora_layers: 4,
            lora_rank: 8,
            grad_checkpoint: true,
        };
        let e = estimate(&s, 3_800_000_000, &plan);
        assert_eq!(e.lora_params, 4 * 559_104);
        assert_eq!(e.lora_state_bytes, 4 * 559_104 * 16);
        // Per token: a block keeps 3/2 × (6·4096 + 4·4096 + 4·11008 =
        // 84 992) elements plus 32 heads × 512 of attention probabilities;
        // the loss 4 × 32000; float32 score gradients 3 × 32 × 512 × 4 bytes.
        // Checkpointed: 4 blocks keep 4096, one is recomputed.
        assert_eq!(s.block_elements_per_token(), 84_992);
        let block = 84_992 * 3 / 2 + 32 * 512;
        let grads = 512 * 3 * 32 * 512 * 4;
        assert_eq!(
            e.activations_checkpoint_bytes,
            512 * 2 * (4 * 32000 + 4 * 4096 + block) + grads
        );
        assert_eq!(
            e.activations_no_checkpoint_bytes,
            512 * 2 * (4 * 32000 + 4 * block) + grads
        );
        // float32 doubles every activation but the (always float32) score
        // gradients.
        let f32 = Shape {
            activation_bytes: 4,
            ..s.clone()
        };
        assert_eq!(
            activations(&f32, &plan, false),
            2 * e.activations_no_checkpoint_bytes - grads
        );
        // KV: 2 × 32 layers × 4096 × 2 bytes × 512 tokens = 256 MiB.
        assert_eq!(e.kv_cache_bytes, 256 << 20);
        // The guide's 16 GB recipe for a 7B 4-bit model fits a 16 GB Mac.
        assert_eq!(verdict(e.training_bytes, 16 * GIB), Verdict::Fits);
    }

    #[test]
    fn verdicts_keep_2_to_4_gb() {
        let ram = 16 * GIB;
        assert_eq!(verdict(12 * GIB, ram), Verdict::Fits);
        assert_eq!(verdict(12 * GIB + 1, ram), Verdict::Tight);
        assert_eq!(verdict(14 * GIB, ram), Verdict::Tight);
        assert_eq!(verdict(14 * GIB + 1, ram), Verdict::DoesNotFit);
    }

    #[test]
    fn largest_batch_and_sequence() {
        let s = llama7b();
        let w = 3_800_000_000;
        let plan = Plan {
            batch_size: 1,
            max_seq_length: 2048,
            lora_layers: 16,
            lora_rank: 8,
            grad_checkpoint: true,
        };
        let b16 = max_batch(&s, w, &plan, 16 * GIB, 64).expect("batch 1 fits");
        let b64 = max_batch(&s, w, &plan, 64 * GIB, 64).expect("fits");
        assert!(b16 >= 1 && b64 > b16, "{b16} {b64}");
        let seq = max_seq(&s, w, &plan, 16 * GIB, 32768).expect("fits");
        assert_eq!(seq % 128, 0);
        let over = Plan {
            max_seq_length: seq + 128,
            ..plan
        };
        assert_ne!(
            verdict(estimate(&s, w, &over).training_bytes, 16 * GIB),
            Verdict::Fits
        );
        // A 70B FP16 model does not fit 64 GB at all.
        assert_eq!(max_batch(&s, 140_000_000_000, &plan, 64 * GIB, 8), None);
        assert_eq!(max_seq(&s, 140_000_000_000, &plan, 64 * GIB, 4096), None);
    }

    #[test]
    fn tiers_by_ram() {
        for (gb, want) in [
            (8, 16),
            (16, 16),
            (24, 16),
            (32, 32),
            (36, 32),
            (48, 32),
            (64, 64),
            (192, 64),
        ] {
            assert_eq!(tier(gb * GIB).ram_gb, want, "{gb} GB");
        }
        // A "16 GB" machine reporting slightly less (firmware carve-out) is still 16.
        assert_eq!(tier(16 * GIB - 100 * (1 << 20)).ram_gb, 16);
    }
}
