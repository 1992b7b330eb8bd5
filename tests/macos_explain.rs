//! `headroom explain` and the macOS pure twins against real public samples
//! (tests/fixtures/macos/SOURCES.md). Runs on every OS.

use headroom::config::Config;
use headroom::explain::{explain, parse_input, run_explain, ExplainError};
use headroom::macos_vm::{self, kernel_rule, RateTracker, VmCounters};
use headroom::model::{Bytes, KernelLevel, Level};
use serde_json::Value;
use std::time::Duration;

const SAMPLE1: &str = include_str!("fixtures/macos/sample1_vm_stat.txt");
const SAMPLE2: &str = include_str!("fixtures/macos/sample2_vm_stat.txt");
const SAMPLE6: &str = include_str!("fixtures/macos/sample6_vm_stat_mib_derived.txt");
const SAMPLE7: &str = include_str!("fixtures/macos/sample7_swapusage_format.txt");

/// sample2's machine: 16 GiB (SOURCES.md).
const SAMPLE2_TOTAL: u64 = 17_179_869_184;
const PAGE: u64 = 16384;

fn cfg() -> Config {
    Config::embedded().expect("embedded defaults")
}

fn gib(b: Bytes) -> f64 {
    b.as_gib_f64()
}

fn assert_gib(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() < 0.01,
        "{what}: {got:.4} GiB, SOURCES.md says {want} GiB"
    );
}

fn json(text: &str, total: Option<u64>) -> Value {
    let out = run_explain(text, total, &cfg(), true).expect("explains");
    serde_json::from_str(&out).expect("valid JSON")
}

fn json_gib(v: &Value, key: &str) -> f64 {
    let b = v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not bytes: {v}"));
    b as f64 / Bytes::GIB as f64
}

/// The table in SOURCES.md: App, Wired, Compressed, Cached (GiB), ANC/AM, rule level.
struct Figures {
    app: f64,
    wired: f64,
    compressed: f64,
    cached: f64,
    ratio: f64,
    level: KernelLevel,
}

const SAMPLE1_FIGURES: Figures = Figures {
    app: 4.48,
    wired: 2.18,
    compressed: 0.85,
    cached: 2.33,
    ratio: 0.935,
    level: KernelLevel::Normal,
};
const SAMPLE2_FIGURES: Figures = Figures {
    app: 3.64,
    wired: 3.02,
    compressed: 6.66,
    cached: 2.03,
    ratio: 0.463,
    level: KernelLevel::Warn,
};

fn check_twins(name: &str, text: &str, f: &Figures) {
    let input = parse_input(text).expect(name);
    assert_eq!(input.page_size, PAGE, "{name}");
    let m = macos_vm::breakdown(&input.counters, input.page_size, Bytes::gib(16));
    assert_gib("App", gib(m.app_bytes.expect("app")), f.app);
    assert_gib("Wired", gib(m.wired_bytes.expect("wired")), f.wired);
    assert_gib(
        "Compressed",
        gib(m.compressed_bytes.expect("compressed")),
        f.compressed,
    );
    assert_gib("Cached", gib(m.cached_bytes.expect("cached")), f.cached);
    let ratio = input.counters.anc_am_ratio().expect("ratio");
    assert!((ratio - f.ratio).abs() < 0.0005, "{name}: ANC/AM {ratio}");
    assert_eq!(
        kernel_rule(KernelLevel::Normal, &input.counters),
        f.level,
        "{name}"
    );
}

fn check_json(name: &str, v: &Value, f: &Figures) {
    assert_eq!(v["page_size"], PAGE, "{name}");
    assert_gib("app_bytes", json_gib(v, "app_bytes"), f.app);
    assert_gib("wired_bytes", json_gib(v, "wired_bytes"), f.wired);
    assert_gib(
        "compressed_bytes",
        json_gib(v, "compressed_bytes"),
        f.compressed,
    );
    assert_gib("cached_bytes", json_gib(v, "cached_bytes"), f.cached);
    assert_eq!(v["kernel_level"], f.level.as_str(), "{name}");
}

// sample1: Apple M1, long-running, heavy historical swap (SOURCES.md).
#[test]
fn sample1_through_the_twins() {
    check_twins("sample1", SAMPLE1, &SAMPLE1_FIGURES);
}

// sample2: 16 GiB Mac under real pressure, 53-column lines (SOURCES.md).
#[test]
fn sample2_through_the_twins() {
    check_twins("sample2", SAMPLE2, &SAMPLE2_FIGURES);
    let input = parse_input(SAMPLE2).expect("sample2");
    // free_count includes speculative: vm_stat printed 4229 free + 681 speculative.
    assert_eq!(input.counters.free, 4229 + 681);
    assert_eq!(input.counters.stored_in_compressor, 1_736_474);
    let m = macos_vm::breakdown(&input.counters, PAGE, Bytes(SAMPLE2_TOTAL));
    // Issue 16: (free − speculative) + file-backed + purgeable
    // = 4229 + 133056 + 24 = 137309 pages = 2.10 GiB (docs/macos.md).
    // The old total − (App + Wired + Compressed) said 175038 pages, 2.67 GiB:
    // 27 % too much, right at the 2 GiB red line.
    assert_eq!(m.available_bytes, Bytes(137_309 * PAGE));
    assert_ne!(m.available_bytes, Bytes(175_038 * PAGE));
    let pct = macos_vm::free_percent(&input.counters, PAGE, Bytes(SAMPLE2_TOTAL));
    assert!((pct.expect("pct") - 35.85).abs() < 0.01, "{pct:?}");
}

#[test]
fn sample2_through_explain_json() {
    let v = json(SAMPLE2, Some(SAMPLE2_TOTAL));
    check_json("sample2", &v, &SAMPLE2_FIGURES);
    assert_eq!(v["total_bytes"], SAMPLE2_TOTAL);
    assert_eq!(v["total_source"], "--total-bytes");
    assert_eq!(v["available_bytes"], 137_309 * PAGE);
    assert_gib("available_bytes", json_gib(&v, "available_bytes"), 2.10);
    assert!((v["free_percent"].as_f64().expect("pct") - 35.85).abs() < 0.01);
    // 2.10 GiB is under the 4 GiB yellow line and over the 2 GiB red line,
    // and the kernel rule says warn: yellow either way.
    assert_eq!(v["level"], "yellow");
    let reasons: Vec<&str> = v["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        v.get("swap_used_bytes").is_none(),
        "no swapusage line given"
    );
}

#[test]
fn sample1_through_explain_with_and_without_total() {
    let v = json(SAMPLE1, None);
    check_json("sample1", &v, &SAMPLE1_FIGURES);
    for key in ["total_bytes", "free_percent", "level"] {
        assert!(v[key].is_null(), "{key} must be null without a total: {v}");
    }
    // Available needs no total: 355378 + 148451 + 3946 = 507775 pages.
    assert_eq!(v["available_bytes"], 507_775 * PAGE);
    // sample1's RAM is not stated; its counted pages (1,000,022) fit a 16 GiB M1.
    let v = json(SAMPLE1, Some(16 * Bytes::GIB));
    assert_eq!(v["level"], "green");
    assert_eq!(v["available_bytes"], 507_775 * PAGE);
    assert_gib("available_bytes", json_gib(&v, "available_bytes"), 7.75);

    let text = run_explain(SAMPLE1, None, &cfg(), false).expect("text");
    assert!(text.contains("total unknown"), "{text}");
    assert!(text.contains("Level: unknown"), "{text}");
    assert!(text.contains("Kernel rule: normal"), "{text}");
}

/// Issue 16: the available formula on both vm_stat fixtures, page by page,
/// and the identity it rests on (speculative pages are file-backed, so
/// "free − speculative" does not count them twice). The figures are the ones
/// derived in docs/macos.md.
#[test]
fn available_is_free_plus_file_backed_plus_purgeable_on_every_fixture() {
    // (fixture, printed free, speculative, file-backed, purgeable, available pages)
    let table = [
        (
            "sample1", SAMPLE1, 355_378, 56_413, 148_451, 3_946, 507_775u64,
        ),
        ("sample2", SAMPLE2, 4_229, 681, 133_056, 24, 137_309),
    ];
    for (name, text, free_printed, spec, ext, purg, want) in table {
        let c = parse_input(text).expect(name).counters;
        assert_eq!(c.free, free_printed + spec, "{name}: kernel free_count");
        assert_eq!(
            c.internal + c.external,
            c.active + c.inactive + c.speculative,
            "{name}: internal + external = active + inactive + speculative"
        );
        assert_eq!((c.external, c.purgeable), (ext, purg), "{name}");
        assert_eq!(c.available_pages(), want, "{name}");
        assert_eq!(want, free_printed + ext + purg, "{name}");
        // Whatever the total, available is the counters' figure (below it).
        for total in [16 * Bytes::GIB, 64 * Bytes::GIB] {
            let m = macos_vm::breakdown(&c, PAGE, Bytes(total));
            assert_eq!(m.available_bytes, Bytes(want * PAGE), "{name} at {total}");
        }
    }
    // sample6 (vm_stat through perl, MiB) has no file-backed line: the
    // formula cannot be applied, and explain refuses it (below).
    assert!(!SAMPLE6.contains("File-backed"));
}

// sample7: the text format of one `sysctl vm.swapusage` line (SOURCES.md).
#[test]
fn sample7_swapusage_with_memsize_in_any_order() {
    let s = macos_vm::SwapUsage {
        total: Bytes::gib(4),
        used: Bytes(2_876_768_256), // 2743.50 MiB
        free: Bytes(1_418_199_040), // 1352.50 MiB
        encrypted: true,
    };
    let value = SAMPLE7.trim().strip_prefix("vm.swapusage:").expect("label");
    assert_eq!(headroom::explain::parse_swapusage(value), Ok(s));

    let pasted = format!("{SAMPLE7}\n{SAMPLE2}\nhw.memsize: {SAMPLE2_TOTAL}\n");
    let v = json(&pasted, None);
    check_json("sample2+7", &v, &SAMPLE2_FIGURES);
    assert_eq!(v["total_bytes"], SAMPLE2_TOTAL);
    assert_eq!(v["total_source"], "hw.memsize");
    assert_eq!(v["swap_used_bytes"], 2_876_768_256u64);
    assert_eq!(v["swap_total_bytes"], 4 * Bytes::GIB);

    let text = run_explain(&pasted, None, &cfg(), false).expect("text");
    assert!(text.contains("Swap used"), "{text}");
    assert!(text.contains("Level: yellow"), "{text}");
    assert!(text.contains("Kernel rule: warn"), "{text}");
}

/// memory_pressure's layout (system_cmds memory_pressure.c), here with
/// sample2's counters except a deliberately different "Pages free".
fn memory_pressure_for_sample2() -> String {
    "The system has 17179869184 (1048576 pages with a page size of 16384).\n\n\
     Stats: \nPages free: 9999 \nPages purgeable: 24 \nPages purged: 61860720 \n\n\
     Swap I/O:\nSwapins: 4693446 \nSwapouts: 6168528 \n\n\
     Page Q counts:\nPages active: 186123 \nPages inactive: 184925 \n\
     Pages speculative: 681 \nPages throttled: 0 \nPages wired down: 198107 \n\n\
     Compressor Stats:\nPages used by compressor: 436782 \n\
     Pages decompressed: 950112330 \nPages compressed: 1066060384 \n\n\
     File I/O:\nPageins: 86971767 \nPageouts: 1809283 \n\n\
     System-wide memory free percentage: 36%\n"
        .to_string()
}

#[test]
fn memory_pressure_gives_total_and_vm_stat_counters_win() {
    for pasted in [
        format!("{}\n{SAMPLE2}", memory_pressure_for_sample2()),
        format!("{SAMPLE2}\n{}", memory_pressure_for_sample2()),
    ] {
        let input = parse_input(&pasted).expect("both");
        assert_eq!(input.total, Some((Bytes(SAMPLE2_TOTAL), "memory_pressure")));
        assert_eq!(input.counters.free, 4229 + 681, "vm_stat's Pages free wins");
        assert_eq!(input.memorystatus_level, Some(36));
        let v = json(&pasted, None);
        check_json("sample2+mp", &v, &SAMPLE2_FIGURES);
        assert_eq!(v["level"], "yellow");
    }
    // memory_pressure alone lacks the file-backed/anonymous split.
    let e = parse_input(&memory_pressure_for_sample2()).expect_err("no vm_stat");
    assert!(
        matches!(&e, ExplainError::Missing(m) if m.contains("'File-backed pages'") && m.contains("'Anonymous pages'")),
        "{e}"
    );
}

#[test]
fn reported_kernel_level_is_used_for_the_headroom_level() {
    let pasted = format!("{SAMPLE1}\nkern.memorystatus_vm_pressure_level: 4\n");
    let v = json(&pasted, Some(16 * Bytes::GIB));
    assert_eq!(v["kernel_level"], "normal", "the rule from the counters");
    assert_eq!(v["kernel_level_reported"], "critical");
    assert_eq!(v["level"], "red", "the kernel says critical");

    let e = parse_input(&format!(
        "{SAMPLE1}kern.memorystatus_vm_pressure_level: 3\n"
    ))
    .expect_err("3 is not a level");
    assert!(e.to_string().starts_with("line 24:"), "{e}");
}

// Intel Macs and Rosetta print 4096-byte pages.
#[test]
fn page_size_4096_header_scales_everything() {
    let intel = SAMPLE1.replace("page size of 16384 bytes", "page size of 4096 bytes");
    let input = parse_input(&intel).expect("4096");
    assert_eq!(input.page_size, 4096);
    let v = json(&intel, Some(8 * Bytes::GIB));
    // 293552 app pages × 4096.
    assert_eq!(v["app_bytes"], 293_552u64 * 4096);
    assert_eq!(v["wired_bytes"], 143_109u64 * 4096);
    assert_eq!(
        v["kernel_level"], "normal",
        "the rule is a ratio: page size cancels"
    );
}

// Newer macOS versions add lines to vm_stat.
#[test]
fn unknown_labels_are_ignored_and_reported() {
    let newer = SAMPLE2.replace(
        "Pages throttled:",
        "Pages realtime:                                 12.\n\
         Pages secluded:                                  7.\nPages throttled:",
    );
    let v = json(&newer, Some(SAMPLE2_TOTAL));
    check_json("newer", &v, &SAMPLE2_FIGURES);
    assert_eq!(
        v["ignored_labels"],
        serde_json::json!(["Pages realtime", "Pages secluded"])
    );
    let text = run_explain(&newer, Some(SAMPLE2_TOTAL), &cfg(), false).expect("text");
    assert!(
        text.contains("Ignored: Pages realtime, Pages secluded"),
        "{text}"
    );
}

#[test]
fn pasted_decorations_are_tolerated() {
    let pasted = format!(
        "```\n$ vm_stat\n{}```\n% sysctl hw.memsize\r\nhw.memsize = {SAMPLE2_TOTAL}\r\n",
        SAMPLE2.replace('\n', "\r\n")
    );
    let v = json(&pasted, None);
    check_json("decorated", &v, &SAMPLE2_FIGURES);
    assert_eq!(v["total_bytes"], SAMPLE2_TOTAL);

    // `sysctl -n` prints bare values on the line after the command.
    let pasted = format!(
        "{SAMPLE2}$ sysctl -n hw.memsize\n{SAMPLE2_TOTAL}\n\
         $ sysctl -n vm.swapusage\n{}\n",
        SAMPLE7.trim().trim_start_matches("vm.swapusage:").trim()
    );
    let v = json(&pasted, None);
    assert_eq!(v["total_bytes"], SAMPLE2_TOTAL);
    assert_eq!(v["swap_used_bytes"], 2_876_768_256u64);
    // A bare number with no command before it is not readable.
    assert_eq!(unreadable_line(&format!("{SAMPLE2}{SAMPLE2_TOTAL}\n")), 24);
}

fn unreadable_line(text: &str) -> usize {
    match parse_input(text) {
        Err(ExplainError::Unreadable { line_no, .. }) => line_no,
        other => panic!("expected an unreadable line, got {other:?}"),
    }
}

#[test]
fn malformed_input_names_the_first_unreadable_line() {
    // sample6 is vm_stat piped through perl: not vm_stat (SOURCES.md).
    assert_eq!(unreadable_line(SAMPLE6), 1);
    let e = run_explain(SAMPLE6, None, &cfg(), false).expect_err("not vm_stat");
    let msg = e.to_string();
    assert!(
        msg.starts_with("line 1: cannot read '$ vm_stat | perl"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    // Without its first line, the MiB values are not page counts.
    let body = SAMPLE6.split_once('\n').expect("lines").1;
    assert_eq!(unreadable_line(body), 1);

    assert_eq!(unreadable_line("hello world"), 1);
    assert_eq!(
        unreadable_line(&SAMPLE2.replace("4229.", "42x9.")),
        2,
        "a non-number"
    );
    assert_eq!(
        unreadable_line(&SAMPLE2.replace("4229.", "99999999999999999999999.")),
        2,
        "too large"
    );
    assert_eq!(
        unreadable_line(&SAMPLE2.replace("4229.", "")),
        2,
        "a label with no value"
    );
    assert_eq!(
        unreadable_line(&SAMPLE1.replace("page size of 16384", "page size of ?")),
        1
    );
    assert_eq!(
        unreadable_line(&format!("{SAMPLE1}vm.swapusage: total = lots\n")),
        24
    );

    assert_eq!(unreadable_line(&format!("{SAMPLE1}hw.memsize: 0\n")), 24);
    assert_eq!(
        unreadable_line(&format!("{SAMPLE1}hw.pagesize = 3000\n")),
        24
    );

    assert_eq!(parse_input(""), Err(ExplainError::NoVmStat));
    assert_eq!(parse_input("\n\n```\n"), Err(ExplainError::NoVmStat));
    let headerless = SAMPLE2.split_once('\n').expect("lines").1;
    assert_eq!(parse_input(headerless), Err(ExplainError::NoPageSize));
    assert_eq!(
        run_explain(SAMPLE2, Some(0), &cfg(), true),
        Err(ExplainError::BadTotal(0))
    );
}

#[test]
fn truncated_input_never_panics_and_says_what_is_missing() {
    // Cut after "Pages purgeable": the breakdown's anonymous/file-backed/
    // compressor lines are gone.
    let cut: String = SAMPLE2.lines().take(8).map(|l| format!("{l}\n")).collect();
    let e = parse_input(&cut).expect_err("truncated");
    assert_eq!(
        e,
        ExplainError::Missing(
            "'File-backed pages', 'Anonymous pages', 'Pages occupied by compressor'".into()
        )
    );
    assert!(e.to_string().contains("cut short"), "{e}");
    // Cut mid-label: that line is named.
    let at = SAMPLE2.find("wired down").expect("label") + 4;
    assert_eq!(unreadable_line(&SAMPLE2[..at]), 7);

    // Every prefix and every one-line deletion: an answer or an error, no panic.
    let cfg = cfg();
    for (i, _) in SAMPLE2.char_indices() {
        let _ = run_explain(&SAMPLE2[..i], Some(SAMPLE2_TOTAL), &cfg, true);
    }
    let lines: Vec<&str> = SAMPLE2.lines().collect();
    for skip in 0..lines.len() {
        let text: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        let _ = run_explain(&text.join("\n"), None, &cfg, false);
    }
}

/// A synthetic run through pressure and back: the kernel rule's hysteresis
/// and the swap-out rate from counter deltas, sample by sample.
#[test]
fn timeline_of_counters_crosses_warn_and_critical_and_recovers() {
    // (seconds, ANC pages, compressor pages, cumulative swapouts)
    // AM stays 1,000,000 pages (a 16 GiB Mac's worth); ANC shrinks as the
    // compressor grows, then the job exits.
    let series: [(u64, u64, u64, KernelLevel, Option<f64>); 9] = {
        use KernelLevel::*;
        [
            (0, 900_000, 0, Normal, None),
            (1, 520_000, 0, Normal, Some(0.0)),
            (2, 480_000, 100, Warn, Some(100.0)),
            (3, 560_000, 300, Warn, Some(200.0)), // 0.56 < 0.6: hysteresis holds warn
            (4, 330_000, 1_300, Critical, Some(1_000.0)),
            (5, 380_000, 2_300, Critical, Some(1_000.0)), // 0.38 < 0.4: holds critical
            (6, 450_000, 2_300, Warn, Some(0.0)),
            (8, 590_000, 2_300, Warn, Some(0.0)),
            (9, 700_000, 2_300, Normal, Some(0.0)),
        ]
    };
    let mut level = KernelLevel::Normal;
    let mut rates = RateTracker::new();
    for (t, anc, swapouts, want_level, want_pages_per_sec) in series {
        let c = VmCounters {
            active: anc / 2,
            inactive: anc / 4,
            free: anc - anc / 2 - anc / 4,
            compressor: 1_000_000 - anc,
            swapouts,
            ..Default::default()
        };
        level = kernel_rule(level, &c);
        assert_eq!(level, want_level, "at {t} s (ANC {anc})");
        let r = rates.update(Duration::from_secs(t), &c, PAGE);
        assert_eq!(
            r.swapout_bytes_per_sec,
            want_pages_per_sec.map(|p| p * PAGE as f64),
            "swap-out rate at {t} s"
        );
    }
    // The same story through explain's JSON for one point: ANC/AM 0.33.
    let input = parse_input(SAMPLE2).expect("sample2");
    let mut squeezed = input.clone();
    squeezed.counters.compressor = 800_000;
    let e = explain(&squeezed, Some(SAMPLE2_TOTAL), &cfg());
    assert_eq!(e.kernel_level, KernelLevel::Critical);
    assert_eq!(e.level, Some(Level::Red));
}

/// Issue 21: pasted `sysctl iogpu.wired_limit_mb` lines (the three forms
/// sysctl prints: `NAME: N`, `-n NAME` then N, and a set's `NAME: old -> new`)
/// are judged against total RAM; without them nothing is said.
#[test]
fn pasted_gpu_wired_limit_is_judged_by_the_headroom_it_leaves() {
    // sample2's Mac has 16 GiB; 15 GiB wired leaves 1 GiB: red.
    let pasted = format!(
        "$ sysctl iogpu.wired_limit_mb iogpu.wired_lwm_mb\niogpu.wired_limit_mb: 15360\niogpu.wired_lwm_mb: 12288\n{SAMPLE2}\nhw.memsize: {SAMPLE2_TOTAL}\n"
    );
    let v = json(&pasted, None);
    assert_eq!(v["gpu_wired_limit_mb"], 15360);
    assert_eq!(v["gpu_wired_lwm_mb"], 12288);
    assert_eq!(v["gpu_wired_level"], "red");
    let w = v["gpu_wired"].as_str().expect("a verdict");
    assert!(w.contains("macOS keeps 1.00 GiB of 16.00 GiB"), "{w}");
    assert!(w.contains("sudo sysctl iogpu.wired_limit_mb=12288"), "{w}");
    let text = run_explain(&pasted, None, &cfg(), false).expect("text");
    assert!(text.contains("GPU wired (red):"), "{text}");

    // `sudo sysctl NAME=N` then its output: the new value counts. 80 % of
    // 16 GiB leaves 3.2 GiB: yellow.
    let set = format!(
        "% sudo sysctl iogpu.wired_limit_mb=13107\niogpu.wired_limit_mb: 0 -> 13107\n{SAMPLE2}\nhw.memsize: {SAMPLE2_TOTAL}\n"
    );
    assert_eq!(json(&set, None)["gpu_wired_level"], "yellow");

    // `sysctl -n`: the bare value; 0 is the system default, never a warning.
    let bare =
        format!("$ sysctl -n iogpu.wired_limit_mb\n0\n{SAMPLE2}\nhw.memsize: {SAMPLE2_TOTAL}\n");
    let v = json(&bare, None);
    assert_eq!(v["gpu_wired_limit_mb"], 0);
    assert_eq!(v["gpu_wired_level"], "green");
    assert!(v["gpu_wired"]
        .as_str()
        .is_some_and(|w| w.contains("system default")));

    // Without a total it is read but not judged; without the lines, absent.
    let v = json(&format!("iogpu.wired_limit_mb: 15360\n{SAMPLE2}"), None);
    assert_eq!(v["gpu_wired_limit_mb"], 15360);
    assert!(v.get("gpu_wired_level").is_none(), "{v}");
    let v = json(SAMPLE2, Some(SAMPLE2_TOTAL));
    assert!(v.get("gpu_wired_limit_mb").is_none() && v.get("gpu_wired").is_none());

    // Not a number: one error naming the line.
    let bad = format!("iogpu.wired_limit_mb: lots\n{SAMPLE2}");
    match parse_input(&bad) {
        Err(e @ ExplainError::Unreadable { line_no: 1, .. }) => {
            assert!(e.to_string().contains("iogpu.wired_limit_mb"), "{e}")
        }
        other => panic!("expected an unreadable line 1, got {other:?}"),
    }
}
