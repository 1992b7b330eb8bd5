//! The Linux /proc parsers against real files (tests/fixtures/linux/README.md
//! says where each came from), malformed input, a fake /proc tree, and the
//! real /proc with a real child process.

mod common;

use headroom::config::Config;
use headroom::discover::ProcessEvent;
use headroom::model::Scope;
use headroom::model::{Bytes, Pid};
use headroom::sample::linux::*;
use headroom::sample::{SampleError, Sampler};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("fixtures/linux/", $name))
    };
}
macro_rules! malformed {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/linux/malformed/", $name))
    };
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const KIB: u64 = 1024;

// ------------------------------------------------------------ real fixtures

#[test]
fn meminfo_real_24gib_vm() {
    // meminfo: idle 24 GiB x86_64 VM, kernel 6.18, no swap.
    let m = parse_meminfo(fixture!("meminfo")).expect("real meminfo parses");
    assert_eq!(m.mem_total, Bytes(24_731_708 * KIB));
    assert_eq!(m.mem_available, Bytes(24_395_368 * KIB));
    assert_eq!(m.mem_free, Some(Bytes(22_925_692 * KIB)));
    assert_eq!(m.cached, Some(Bytes(1_621_024 * KIB)));
    assert_eq!(m.anon_pages, Some(Bytes(16_604 * KIB)));
    assert_eq!(m.unevictable, Some(Bytes(11_536 * KIB)));
    assert_eq!(m.mlocked, Some(Bytes(9_976 * KIB)));
    assert_eq!(m.shmem, Some(Bytes(8_856 * KIB)));
    assert_eq!(m.zswap, Some(Bytes(0)));
    assert_eq!(m.swap_total, Some(Bytes(0)));
    assert_eq!(m.swap_free, Some(Bytes(0)));

    let s = m.system_memory();
    assert_eq!(s.total_bytes, Bytes(24_731_708 * KIB));
    assert_eq!(s.available_bytes, Bytes(24_395_368 * KIB));
    assert_eq!(s.app_bytes, Some(Bytes(16_604 * KIB)));
    assert_eq!(s.cached_bytes, Some(Bytes(1_621_024 * KIB)));
    assert_eq!(s.free_bytes, Some(Bytes(22_925_692 * KIB)));
    assert_eq!(
        s.wired_bytes,
        Some(Bytes(11_536 * KIB)),
        "Unevictable only: Mlocked is a subset of it"
    );
    assert_eq!(s.swap_total_bytes, Some(Bytes(0)));
    assert_eq!(s.swap_used_bytes, Some(Bytes(0)));
}

#[test]
fn meminfo_swap_used_is_total_minus_free() {
    let m = parse_meminfo(
        "MemTotal: 1000 kB\nMemAvailable: 500 kB\nSwapTotal: 2048 kB\nSwapFree: 512 kB\n",
    )
    .expect("parses");
    let s = m.system_memory();
    assert_eq!(s.swap_used_bytes, Some(Bytes(1536 * KIB)));
    assert_eq!(s.app_bytes, None, "absent lines are None");
    // Only SwapTotal: used is unknown, not SwapTotal.
    let m = parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 500 kB\nSwapTotal: 2048 kB\n")
        .expect("parses");
    assert_eq!(m.system_memory().swap_used_bytes, None);
}

#[test]
fn psi_real_and_some_only() {
    // pressure_memory: the idle VM, all zeros.
    let p = parse_psi(fixture!("pressure_memory")).expect("real psi parses");
    let zero = PsiLine {
        avg10: 0.0,
        avg60: 0.0,
        avg300: 0.0,
        total_us: 0,
    };
    assert_eq!(p.some, zero);
    assert_eq!(p.full, Some(zero));

    let p = parse_psi(&text(malformed!("pressure_some_only"))).expect("some alone is valid");
    assert_eq!(
        p.some,
        PsiLine {
            avg10: 0.12,
            avg60: 0.05,
            avg300: 0.01,
            total_us: 123_456
        }
    );
    assert_eq!(p.full, None);
}

#[test]
fn vmstat_real_pswpout() {
    assert_eq!(parse_vmstat_pswpout(fixture!("vmstat")).expect("parses"), 0);
    assert_eq!(
        parse_vmstat_pswpout("pswpin 7\npswpout 4096\npgpgout 9\n").expect("parses"),
        4096
    );
}

#[test]
fn stat_real_processes() {
    struct Case {
        file: &'static str,
        text: &'static str,
        want: ProcStat,
        kernel_or_gone: bool,
    }
    let cases = [
        Case {
            // the python that imported mlx
            file: "python_mlx.stat",
            text: fixture!("python_mlx.stat"),
            want: ProcStat {
                pid: 4873,
                comm: "python".into(),
                state: 'S',
                ppid: 1,
                pgrp: 4870,
                flags: 4_194_304,
                start_time: 34_316,
                rss_pages: 5_262,
            },
            kernel_or_gone: false,
        },
        Case {
            file: "self.stat",
            text: fixture!("self.stat"),
            want: ProcStat {
                pid: 4941,
                comm: "cat".into(),
                state: 'R',
                ppid: 4929,
                pgrp: 4929,
                flags: 4_194_304,
                start_time: 34_983,
                rss_pages: 393,
            },
            kernel_or_gone: false,
        },
        Case {
            // a real comm of "a) (b c) d": the name ends at the LAST ')'
            file: "weird_comm.stat",
            text: fixture!("weird_comm.stat"),
            want: ProcStat {
                pid: 5765,
                comm: "a) (b c) d".into(),
                state: 'S',
                ppid: 5759,
                pgrp: 5759,
                flags: 4_194_304,
                start_time: 46_224,
                rss_pages: 416,
            },
            kernel_or_gone: false,
        },
        Case {
            file: "kthreadd.stat",
            text: fixture!("kthreadd.stat"),
            want: ProcStat {
                pid: 2,
                comm: "kthreadd".into(),
                state: 'S',
                ppid: 0,
                pgrp: 0,
                flags: 2_129_984,
                start_time: 6,
                rss_pages: 0,
            },
            kernel_or_gone: true,
        },
    ];
    for c in cases {
        let got = parse_stat(c.text).unwrap_or_else(|e| panic!("{}: {e}", c.file));
        assert_eq!(got, c.want, "{}", c.file);
        assert_eq!(got.is_kernel_or_gone(), c.kernel_or_gone, "{}", c.file);
    }
    let zombie =
        parse_stat("77 (python) Z 1 77 77 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 900 0 0 1")
            .expect("zombie parses");
    assert!(zombie.is_kernel_or_gone());
}

#[test]
fn status_uid_real_and_edge_cases() {
    assert_eq!(parse_status_uid(fixture!("self.status")), Some(0));
    assert_eq!(parse_status_uid(fixture!("python_mlx.status")), Some(0));
    assert_eq!(
        parse_status_uid("Name:\tx\nUid:\t1000\t1001\t1002\t1003\n"),
        Some(1000),
        "the real uid, not effective"
    );
    assert_eq!(parse_status_uid("Name:\tx\n"), None);
    assert_eq!(parse_status_uid("Uid:\tme\n"), None);
    assert_eq!(parse_status_uid(""), None);
}

#[test]
fn cmdline_real_and_edge_cases() {
    assert_eq!(
        parse_cmdline(fixture!("python_mlx.cmdline").as_bytes()),
        "/tmp/venvtest/bin/python -c import mlx.core as mx, time; a = mx.ones((1000,1000)); \
         mx.eval(a); print('ok', flush=True); time.sleep(60)"
    );
    assert_eq!(
        parse_cmdline(include_bytes!("fixtures/linux/kthreadd.cmdline")),
        "",
        "kernel thread"
    );
    assert_eq!(
        parse_cmdline(b"python\0-m\0mlx_lm.lora\0--train\0"),
        "python -m mlx_lm.lora --train"
    );
    assert_eq!(
        parse_cmdline(b"setproctitle style\0\0\0\0"),
        "setproctitle style"
    );
    assert_eq!(parse_cmdline(b"a\xffb\0c"), "a\u{fffd}b c", "lossy UTF-8");
    assert_eq!(parse_cmdline(b"\0\0"), "");
}

#[test]
fn maps_finds_libmlx_by_file_name_only() {
    let cases: &[(&str, String, Option<&str>)] = &[
        (
            // real: mlx_cpu.libs/libgfortran comes first and is not MLX
            "python_mlx.maps",
            fixture!("python_mlx.maps").to_string(),
            Some("/tmp/venvtest/lib/python3.11/site-packages/mlx/lib/libmlx.so"),
        ),
        ("maps_lookalikes", text(malformed!("maps_lookalikes")), None),
        (
            "maps_deleted_with_spaces",
            text(malformed!("maps_deleted_with_spaces")),
            Some("/home/u/My Envs/mlx/lib/libmlx.so"),
        ),
        ("empty", String::new(), None),
        (
            "anonymous only",
            "7f3a10000000-7f3a10021000 rw-p 00000000 00:00 0\n".into(),
            None,
        ),
        (
            "versioned soname",
            "7f0-7f1 r--p 00000000 fe:00 1 /opt/lib/libmlx.so.0.21.0\n".into(),
            Some("/opt/lib/libmlx.so.0.21.0"),
        ),
    ];
    for (name, maps, want) in cases {
        assert_eq!(maps_mlx_library(maps).as_deref(), *want, "{name}");
    }
}

// ---------------------------------------------------------- malformed input

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let meminfo: &[(&str, &[u8])] = &[
        ("empty", malformed!("empty")),
        ("garbage.txt", malformed!("garbage.txt")),
        ("binary_junk.bin", malformed!("binary_junk.bin")),
        ("meminfo_truncated", malformed!("meminfo_truncated")),
        (
            "meminfo_no_memavailable",
            malformed!("meminfo_no_memavailable"),
        ),
        ("meminfo_bad_number", malformed!("meminfo_bad_number")),
        ("meminfo_no_unit", malformed!("meminfo_no_unit")),
    ];
    for (name, bytes) in meminfo {
        expect_parse_err("meminfo", name, parse_meminfo(&text(bytes)));
    }
    let e = parse_meminfo(&text(malformed!("meminfo_no_memavailable")))
        .expect_err("no MemAvailable")
        .to_string();
    assert!(e.contains("MemAvailable"), "{e}");
    let e = parse_meminfo(&text(malformed!("meminfo_bad_number")))
        .expect_err("bad number")
        .to_string();
    assert!(e.contains("MemTotal") && e.contains("24731708x"), "{e}");

    let psi: &[(&str, &[u8])] = &[
        ("empty", malformed!("empty")),
        ("garbage.txt", malformed!("garbage.txt")),
        ("binary_junk.bin", malformed!("binary_junk.bin")),
        ("pressure_not_a_number", malformed!("pressure_not_a_number")),
        (
            "pressure_missing_avg300",
            malformed!("pressure_missing_avg300"),
        ),
        ("pressure_no_some", malformed!("pressure_no_some")),
    ];
    for (name, bytes) in psi {
        expect_parse_err("psi", name, parse_psi(&text(bytes)));
    }
    for bad in [
        "some avg10=nan avg60=0 avg300=0 total=0",
        "some avg10=101 avg60=0 avg300=0 total=0",
        "some avg10=-1 avg60=0 avg300=0 total=0",
        "some avg10=0 avg60=0 avg300=0 total=-5",
        "some avg10 0 avg60=0 avg300=0 total=0",
    ] {
        expect_parse_err("psi", bad, parse_psi(bad));
    }

    let vmstat: &[(&str, &[u8])] = &[
        ("empty", malformed!("empty")),
        ("garbage.txt", malformed!("garbage.txt")),
        ("binary_junk.bin", malformed!("binary_junk.bin")),
        ("vmstat_no_pswpout", malformed!("vmstat_no_pswpout")),
        ("vmstat_bad_pswpout", malformed!("vmstat_bad_pswpout")),
    ];
    for (name, bytes) in vmstat {
        expect_parse_err("vmstat", name, parse_vmstat_pswpout(&text(bytes)));
    }
    expect_parse_err("vmstat", "extra", parse_vmstat_pswpout("pswpout 1 2\n"));

    let stat: &[(&str, &[u8])] = &[
        ("empty", malformed!("empty")),
        ("garbage.txt", malformed!("garbage.txt")),
        ("binary_junk.bin", malformed!("binary_junk.bin")),
        ("stat_truncated", malformed!("stat_truncated")),
        ("stat_no_close_paren", malformed!("stat_no_close_paren")),
        ("stat_bad_start_time", malformed!("stat_bad_start_time")),
        ("stat_no_pid", malformed!("stat_no_pid")),
    ];
    for (name, bytes) in stat {
        expect_parse_err("stat", name, parse_stat(&text(bytes)));
    }
    expect_parse_err("stat", ") before (", parse_stat("1 )x( S 1"));
    expect_parse_err("stat", "two-char state", parse_stat("1 (x) SS 1"));

    // These return Option/String: they must simply not panic.
    for bytes in [
        &malformed!("binary_junk.bin")[..],
        malformed!("garbage.txt"),
        malformed!("empty"),
    ] {
        let _ = parse_status_uid(&text(bytes));
        let _ = parse_cmdline(bytes);
        assert_eq!(maps_mlx_library(&text(bytes)), None);
    }
}

fn expect_parse_err<T: std::fmt::Debug>(parser: &str, name: &str, r: Result<T, SampleError>) {
    match r {
        Err(SampleError::Parse { what, detail }) => {
            assert!(!what.is_empty(), "{parser}/{name}: error names what");
            assert!(
                !detail.contains('\n'),
                "{parser}/{name}: one-line message: {detail:?}"
            );
        }
        other => panic!("{parser}/{name}: expected a parse error, got {other:?}"),
    }
}

/// Run every parser over `t[..i]` for each char boundary `i` in `range`.
fn parse_prefixes(t: &str, range: std::ops::Range<usize>) {
    for (i, _) in t.char_indices().filter(|(i, _)| range.contains(i)) {
        let p = &t[..i];
        let _ = parse_meminfo(p);
        let _ = parse_psi(p);
        let _ = parse_vmstat_pswpout(p);
        let _ = parse_stat(p);
        let _ = parse_status_uid(p);
        let _ = maps_mlx_library(p);
        let _ = parse_cmdline(p.as_bytes());
    }
}

#[test]
fn every_prefix_of_real_files_parses_or_errs_without_panic() {
    for t in [
        fixture!("meminfo"),
        fixture!("pressure_memory"),
        fixture!("vmstat"),
        fixture!("weird_comm.stat"),
        fixture!("python_mlx.stat"),
        fixture!("self.status"),
    ] {
        parse_prefixes(t, 0..t.len() + 1);
    }
    // The maps file is 11 KB: cut it everywhere near its start and around
    // the first libmlx line, where a cut path must never match wrongly.
    let maps = fixture!("python_mlx.maps");
    let lib = maps.find("/mlx/lib/libmlx.so").expect("libmlx in fixture");
    parse_prefixes(maps, 0..600);
    parse_prefixes(maps, lib - 200..lib + 200);
    for (i, _) in maps.char_indices().filter(|(i, _)| *i < lib + 18) {
        let got = maps_mlx_library(&maps[..i]);
        assert!(
            got.is_none() || i >= lib + "/mlx/lib/libmlx.".len(),
            "prefix {i}: {got:?}"
        );
    }
    // A stat cut before field 24 is an error, never a wrong number.
    let s = fixture!("python_mlx.stat");
    let rss_end = s.find(" 5262 ").expect("rss in fixture") + " 5262".len();
    for i in 0..rss_end - 4 {
        assert!(
            parse_stat(&s[..i]).is_err(),
            "prefix {i} of python_mlx.stat"
        );
    }
}

// ------------------------------------------------------- fake /proc tree

fn config() -> Config {
    Config::embedded().expect("embedded config")
}

/// A /proc/PID/stat line with the fields headroom reads set.
fn stat_line(pid: i32, comm: &str, state: char, start: u64, rss_pages: u64) -> String {
    format!(
        "{pid} ({comm}) {state} 1 {pid} {pid} 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 \
         {start} 123456789 {rss_pages} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 17 0\n"
    )
}

struct FakeProc<'a> {
    pid: i32,
    uid: u32,
    state: char,
    cmdline: &'a [u8],
    maps: &'a str,
    rss_pages: u64,
}

fn write_proc(proc_dir: &Path, p: &FakeProc) {
    let d = proc_dir.join(p.pid.to_string());
    fs::create_dir_all(&d).expect("mkdir pid");
    fs::write(
        d.join("stat"),
        stat_line(p.pid, "python", p.state, 5000 + p.pid as u64, p.rss_pages),
    )
    .expect("write stat");
    fs::write(
        d.join("status"),
        format!(
            "Name:\tpython\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{u}\t{u}\t{u}\t{u}\n",
            u = p.uid
        ),
    )
    .expect("write status");
    fs::write(d.join("cmdline"), p.cmdline).expect("write cmdline");
    fs::write(d.join("maps"), p.maps).expect("write maps");
}

fn write_vmstat(proc_dir: &Path, pswpout: u64) {
    fs::write(
        proc_dir.join("vmstat"),
        format!("nr_free_pages 849554\npswpin 3\npswpout {pswpout}\npgpgout 1007976\n"),
    )
    .expect("write vmstat");
}

/// A root/proc with the real meminfo and PSI fixtures and no processes.
fn fake_root(with_psi: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let proc_dir = root.path().join("proc");
    fs::create_dir_all(&proc_dir).expect("mkdir proc");
    fs::write(proc_dir.join("meminfo"), fixture!("meminfo")).expect("write meminfo");
    if with_psi {
        fs::create_dir_all(proc_dir.join("pressure")).expect("mkdir pressure");
        fs::write(
            proc_dir.join("pressure/memory"),
            fixture!("pressure_memory"),
        )
        .expect("write psi");
    }
    write_vmstat(&proc_dir, 1000);
    root
}

#[test]
fn fake_tree_finds_exactly_the_mlx_processes_and_swapout_rate() {
    let root = fake_root(true);
    let proc_dir = root.path().join("proc");
    // With swap (the swap-out rate is read only while swap exists).
    fs::write(
        proc_dir.join("meminfo"),
        fixture!("meminfo")
            .replace("SwapTotal:             0 kB", "SwapTotal:       2097148 kB")
            .replace("SwapFree:              0 kB", "SwapFree:        2097148 kB"),
    )
    .expect("write meminfo");
    // Fake pids must not be the test's own pid, which discovery skips.
    let me = std::process::id() as i32;
    let base = if (1000..1010).contains(&me) {
        2000
    } else {
        1000
    };
    let lora = FakeProc {
        pid: base,
        uid: 1000,
        state: 'S',
        cmdline: b"python\0-m\0mlx_lm.lora\0--train\0",
        maps: "",
        rss_pages: 5000,
    };
    let script = FakeProc {
        pid: base + 1,
        uid: 1000,
        state: 'R',
        cmdline: b"python\0train.py\0",
        maps: fixture!("python_mlx.maps"),
        rss_pages: 12_000,
    };
    let plain_maps = text(malformed!("maps_lookalikes"));
    let plain = FakeProc {
        pid: base + 2,
        uid: 1000,
        state: 'S',
        cmdline: b"python\0other.py\0",
        maps: &plain_maps,
        rss_pages: 90_000,
    };
    let other_user = FakeProc {
        pid: base + 3,
        uid: 1001,
        state: 'S',
        cmdline: b"python\0-m\0mlx_lm.lora\0--train\0",
        maps: "",
        rss_pages: 7000,
    };
    let zombie = FakeProc {
        pid: base + 4,
        uid: 1000,
        state: 'Z',
        cmdline: b"",
        maps: fixture!("python_mlx.maps"),
        rss_pages: 0,
    };
    for p in [&lora, &script, &plain, &other_user, &zombie] {
        write_proc(&proc_dir, p);
    }
    // A kernel thread, and entries that are not pids.
    fs::create_dir_all(proc_dir.join("2")).expect("mkdir 2");
    fs::write(proc_dir.join("2/stat"), fixture!("kthreadd.stat")).expect("write");
    fs::write(proc_dir.join("2/cmdline"), "").expect("write");
    fs::create_dir_all(proc_dir.join("sys")).expect("mkdir sys");
    fs::create_dir_all(proc_dir.join("+12")).expect("mkdir +12");
    fs::write(proc_dir.join("uptime"), "1.0 1.0\n").expect("write uptime");

    let scope = Scope::user(1000);
    let mut s =
        LinuxSampler::with_root(root.path(), &config(), scope, Instant::now()).expect("sampler");
    let page = page_size().expect("page size");

    let first = s.sample().expect("first sample");
    assert_eq!(first.memory.total_bytes, Bytes(24_731_708 * KIB));
    assert_eq!(first.memory.available_bytes, Bytes(24_395_368 * KIB));
    assert_eq!(first.pressure.psi_some_avg10, Some(0.0));
    assert_eq!(first.pressure.psi_full_avg10, Some(0.0));
    assert_eq!(first.pressure.kernel_level, None);
    assert_eq!(first.pressure.swapout_bytes_per_sec, None, "first sample");

    // Which pattern matched is config/default.toml's business; the kind is ours.
    let found: Vec<(Pid, Bytes, &str)> = first
        .mlx_processes
        .iter()
        .map(|p| {
            (
                p.pid,
                p.rss_bytes,
                p.matched_by.split(':').next().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (Pid(script.pid), Bytes(12_000 * page), "library"),
            (Pid(lora.pid), Bytes(5000 * page), "pattern"),
        ],
        "largest first; not the plain python, the other user's, the zombie or kthreadd"
    );
    assert_eq!(
        first.mlx_processes[0].matched_by,
        "library:/tmp/venvtest/lib/python3.11/site-packages/mlx/lib/libmlx.so"
    );
    let p = &first.mlx_processes[1];
    assert_eq!(p.footprint_bytes, p.rss_bytes, "footprint is RSS on Linux");
    assert_eq!(p.uid, 1000);
    assert_eq!(p.start_time, 5000 + lora.pid as u64);
    assert_eq!(p.name, "python");
    assert_eq!(p.cmdline, "python -m mlx_lm.lora --train");
    let events = s.take_events();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| matches!(e, ProcessEvent::Found(_))));

    // 2560 pages swapped out between two samples, further apart than the
    // shortest span a rate is measured over (src/rate.rs, issue 20).
    write_vmstat(&proc_dir, 1000 + 2560);
    std::thread::sleep(headroom::rate::MIN_SPAN + Duration::from_millis(50));
    let second = s.sample().expect("second sample");
    let secs = (second.at - first.at).as_secs_f64();
    let want = 2560.0 * page as f64 / secs;
    let got = second.pressure.swapout_bytes_per_sec.expect("a rate");
    assert!((got - want).abs() <= want * 1e-9, "got {got}, want {want}");

    // The counter went backwards (reset): no rate rather than a negative one.
    write_vmstat(&proc_dir, 10);
    let third = s.sample().expect("third sample");
    assert_eq!(third.pressure.swapout_bytes_per_sec, None);

    // The lora process exits: its directory goes away.
    fs::remove_dir_all(proc_dir.join(lora.pid.to_string())).expect("rm pid");
    let fourth = s.sample().expect("fourth sample");
    assert_eq!(fourth.mlx_processes.len(), 1);
    assert_eq!(fourth.mlx_processes[0].pid, Pid(script.pid));
    match s.take_events().as_slice() {
        [ProcessEvent::Exited { process, .. }] => assert_eq!(process.pid, Pid(lora.pid)),
        other => panic!("expected one Exited event, got {other:?}"),
    }

    // It becomes a zombie instead: gone too (measured as None).
    let script_zombie = FakeProc {
        state: 'Z',
        ..script
    };
    write_proc(&proc_dir, &script_zombie);
    let fifth = s.sample().expect("fifth sample");
    assert!(fifth.mlx_processes.is_empty());
}

#[test]
fn no_pressure_dir_means_no_psi() {
    let root = fake_root(false);
    let mut s = LinuxSampler::with_root(root.path(), &config(), Scope::root([]), Instant::now())
        .expect("sampler");
    let snap = s.sample().expect("sample without PSI");
    assert_eq!(snap.pressure.psi_some_avg10, None);
    assert_eq!(snap.pressure.psi_full_avg10, None);
    assert!(snap.mlx_processes.is_empty());
}

#[test]
fn psi_without_full_line_gives_some_only() {
    let root = fake_root(true);
    fs::write(
        root.path().join("proc/pressure/memory"),
        malformed!("pressure_some_only"),
    )
    .expect("write psi");
    let mut s = LinuxSampler::with_root(root.path(), &config(), Scope::root([]), Instant::now())
        .expect("sampler");
    let snap = s.sample().expect("sample");
    assert_eq!(snap.pressure.psi_some_avg10, Some(0.12));
    assert_eq!(snap.pressure.psi_full_avg10, None);
}

#[test]
fn missing_or_bad_system_files_are_errors() {
    // No meminfo: an I/O error naming the file.
    let root = fake_root(true);
    fs::remove_file(root.path().join("proc/meminfo")).expect("rm meminfo");
    let mut s = LinuxSampler::with_root(root.path(), &config(), Scope::root([]), Instant::now())
        .expect("sampler");
    match s.sample() {
        Err(SampleError::Io { path, .. }) => assert!(path.ends_with("proc/meminfo"), "{path:?}"),
        other => panic!("expected Io error, got {other:?}"),
    }

    // Garbled PSI is an error (absent PSI is not).
    let root = fake_root(true);
    fs::write(
        root.path().join("proc/pressure/memory"),
        malformed!("pressure_not_a_number"),
    )
    .expect("write psi");
    let mut s = LinuxSampler::with_root(root.path(), &config(), Scope::root([]), Instant::now())
        .expect("sampler");
    assert!(matches!(s.sample(), Err(SampleError::Parse { .. })));

    // meminfo without MemAvailable.
    let root = fake_root(true);
    fs::write(
        root.path().join("proc/meminfo"),
        malformed!("meminfo_no_memavailable"),
    )
    .expect("write meminfo");
    let mut s = LinuxSampler::with_root(root.path(), &config(), Scope::root([]), Instant::now())
        .expect("sampler");
    assert!(matches!(s.sample(), Err(SampleError::Parse { .. })));
}

// ------------------------------------------------------------ the real /proc

#[cfg(target_os = "linux")]
mod live {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// Kills the child by pid even when an assertion fails.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn my_scope() -> Scope {
        Scope::user(nix::unistd::getuid().as_raw())
    }

    #[test]
    fn page_size_matches_getconf() {
        let out = Command::new("getconf")
            .arg("PAGESIZE")
            .output()
            .expect("run getconf");
        let want: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("getconf prints a number");
        assert_eq!(page_size().expect("page size"), want);
    }

    #[test]
    fn real_proc_memory_figures_are_sane() {
        let mut s = LinuxSampler::new(&config(), my_scope(), Instant::now()).expect("sampler");
        let snap = s.sample().expect("sample real /proc");
        assert!(snap.memory.total_bytes.0 > 0);
        assert!(snap.memory.available_bytes <= snap.memory.total_bytes);
        assert!(snap.memory.free_bytes.is_some());
        assert!(
            snap.mlx_processes
                .iter()
                .all(|p| p.pid.0 != std::process::id() as i32),
            "never itself"
        );
        std::thread::sleep(headroom::rate::MIN_SPAN + Duration::from_millis(50));
        let again = s.sample().expect("second sample");
        // /proc/vmstat is read only while swap exists (issue 18): without
        // swap there is no swap-out rate at all.
        let has_swap = again.memory.swap_total_bytes.is_some_and(|t| t.0 > 0);
        match again.pressure.swapout_bytes_per_sec {
            Some(r) => assert!(has_swap && r >= 0.0, "{r}"),
            None => assert!(!has_swap, "swap exists but no rate"),
        }
    }

    #[test]
    fn real_child_matching_a_pattern_is_found_then_exits() {
        // An executable named mlx_lm.lora (`sleep` through a link of that
        // name): argv[0] and the kernel's name agree, so its program is
        // mlx_lm.lora (issue 12).
        let dir = tempfile::tempdir().expect("tempdir");
        let link = dir.path().join("mlx_lm.lora");
        std::os::unix::fs::symlink("/bin/sleep", &link).expect("symlink");
        let child = Command::new(&link).arg("30").spawn().expect("spawn sleep");
        let pid = Pid(child.id() as i32);
        let mut child = Reap(child);

        let mut s = LinuxSampler::new(&config(), my_scope(), Instant::now()).expect("sampler");
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let snap = s.sample().expect("sample");
            if let Some(p) = snap.mlx_processes.into_iter().find(|p| p.pid == pid) {
                break p;
            }
            assert!(Instant::now() < deadline, "child {pid} not found");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(found.cmdline, format!("{} 30", link.display()));
        assert_eq!(found.name, "mlx_lm.lora");
        assert_eq!(found.program, "mlx_lm.lora");
        assert_eq!(found.uid, nix::unistd::getuid().as_raw());
        assert!(
            found.matched_by.starts_with("pattern:"),
            "{}",
            found.matched_by
        );
        assert!(found.rss_bytes.0 > 0);
        assert!(found.start_time > 0);

        // Kill it by pid and reap it: the next sample reports it exited.
        child.0.kill().expect("kill child");
        child.0.wait().expect("reap child");
        let snap = s.sample().expect("sample after exit");
        assert!(snap.mlx_processes.iter().all(|p| p.pid != pid));
        let exited = s
            .take_events()
            .into_iter()
            .any(|e| matches!(e, ProcessEvent::Exited { process, .. } if process.pid == pid));
        assert!(exited, "an Exited event for {pid}");
    }

    /// Needs a Python with mlx installed: HEADROOM_TEST_PYTHON=/path/to/python.
    #[test]
    fn real_python_importing_mlx_is_found_by_library() {
        let Some(python) =
            crate::common::need::mlx("real_python_importing_mlx_is_found_by_library")
        else {
            return;
        };
        use std::io::BufRead;
        let mut child = Command::new(python)
            .args([
                "-c",
                "import mlx.core, time; print('ready', flush=True); time.sleep(30)",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let stdout = child.stdout.take().expect("stdout");
        let pid = Pid(child.id() as i32);
        let _reap = Reap(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(line.trim(), "ready");

        let mut s = LinuxSampler::new(&config(), my_scope(), Instant::now()).expect("sampler");
        let snap = s.sample().expect("sample");
        let p = snap
            .mlx_processes
            .iter()
            .find(|p| p.pid == pid)
            .expect("python with mlx found");
        assert!(
            p.matched_by.starts_with("library:") && p.matched_by.ends_with("/libmlx.so"),
            "{}",
            p.matched_by
        );
    }
}
