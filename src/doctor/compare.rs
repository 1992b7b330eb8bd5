//! doctor's comparisons, pure: headroom's figures from two samples taken
//! just before and just after the system tool ran, against what the tool
//! printed. A figure passes when the tool's value lies between the two
//! samples' values, widened by a tolerance for the counters' drift in the
//! milliseconds between the reads; totals must match exactly.

use super::{Check, Status};
use crate::model::{Bytes, Snapshot};

/// What `free -b` (procps) prints that doctor compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Free {
    pub total: u64,
    /// None from a procps too old to print the "available" column.
    pub available: Option<u64>,
    pub swap_total: u64,
    pub swap_used: u64,
}

/// Parses `free -b`: the header names the columns, `Mem:` and `Swap:` rows.
pub fn parse_free(text: &str) -> Option<Free> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (mut mem, mut swap) = (None, None);
    for l in lines {
        let mut f = l.split_whitespace();
        let label = f.next()?;
        let nums: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
        match label {
            "Mem:" => mem = Some(nums),
            "Swap:" => swap = Some(nums),
            _ => {}
        }
    }
    let mem = mem?;
    let swap = swap.unwrap_or_default();
    Some(Free {
        total: *mem.get(col("total")?)?,
        available: col("available").and_then(|i| mem.get(i).copied()),
        swap_total: swap.first().copied().unwrap_or(0),
        swap_used: swap.get(1).copied().unwrap_or(0),
    })
}

/// The drift allowed between reads ms apart: 64 MiB or 1 % of RAM.
fn drift(total: Bytes) -> u64 {
    (64 * Bytes::MIB).max(total.0 / 100)
}

/// `theirs` within [min(before, after) − tol, max(before, after) + tol].
fn bracket(name: &str, before: u64, after: u64, theirs: u64, tol: u64, tool: &str) -> Check {
    let (lo, hi) = (before.min(after), before.max(after));
    let ok = theirs + tol >= lo && theirs <= hi.saturating_add(tol);
    let ours = if lo == hi {
        format!("{}", Bytes(lo))
    } else {
        format!("{} … {}", Bytes(lo), Bytes(hi))
    };
    let c = if ok {
        Check::new(
            name,
            Status::Ok,
            format!("matches {tool} (within {})", Bytes(tol)),
        )
    } else {
        Check::new(
            name,
            Status::Fail,
            format!("differs from {tool} by more than {} of drift", Bytes(tol)),
        )
    };
    c.figures(ours, format!("{}", Bytes(theirs)))
}

fn exact(name: &str, ours: u64, theirs: u64, tool: &str) -> Check {
    let c = if ours == theirs {
        Check::new(name, Status::Ok, format!("equal to {tool}"))
    } else {
        Check::new(name, Status::Fail, format!("not equal to {tool}"))
    };
    c.figures(format!("{}", Bytes(ours)), format!("{}", Bytes(theirs)))
}

/// Linux: MemAvailable, MemTotal and swap against `free -b`.
pub fn compare_linux(before: &Snapshot, after: &Snapshot, text: &str) -> Vec<Check> {
    let Some(f) = parse_free(text) else {
        return vec![Check::new(
            "memory",
            Status::Warn,
            "could not read `free -b`'s output: nothing to compare with",
        )];
    };
    let (b, a) = (&before.memory, &after.memory);
    let tol = drift(b.total_bytes);
    let mut out = vec![exact("total", b.total_bytes.0, f.total, "free -b total")];
    out.push(match f.available {
        Some(av) => bracket(
            "available",
            b.available_bytes.0,
            a.available_bytes.0,
            av,
            tol,
            "free -b available",
        ),
        None => Check::new(
            "available",
            Status::Warn,
            "free -b has no 'available' column (procps < 3.3.10)",
        ),
    });
    let swap = |m: &crate::model::SystemMemory| {
        (
            m.swap_total_bytes.map_or(0, |x| x.0),
            m.swap_used_bytes.map_or(0, |x| x.0),
        )
    };
    let ((bt, bu), (_, au)) = (swap(b), swap(a));
    out.push(exact("swap total", bt, f.swap_total, "free -b swap total"));
    out.push(bracket(
        "swap used",
        bu,
        au,
        f.swap_used,
        tol,
        "free -b swap used",
    ));
    out
}

/// The checks `compare_macos` makes of memory figures (there may be more:
/// the kernel's level and free percentage when the text has them).
pub const MAC_MEMORY_CHECKS: [&str; 8] = [
    "total",
    "available",
    "app",
    "wired",
    "compressed",
    "free",
    "swap total",
    "swap used",
];

/// macOS: the page-count breakdown, total, swap and the kernel's level
/// against `vm_stat`, `sysctl hw.memsize vm.swapusage
/// kern.memorystatus_vm_pressure_level` and `memory_pressure -Q`, read with
/// `explain`'s parser (the same one users paste into).
pub fn compare_macos(before: &Snapshot, after: &Snapshot, text: &str) -> Vec<Check> {
    let input = match crate::explain::parse_input(text) {
        Ok(i) => i,
        Err(e) => {
            return vec![Check::new(
                "memory",
                Status::Warn,
                format!("could not read vm_stat / sysctl output: {e}"),
            )]
        }
    };
    let (b, a) = (&before.memory, &after.memory);
    let Some((memsize, _)) = input.total else {
        return vec![Check::new(
            "total",
            Status::Warn,
            "no hw.memsize in sysctl's output",
        )];
    };
    let theirs = crate::macos_vm::breakdown(&input.counters, input.page_size, memsize);
    let tol = drift(b.total_bytes);
    let mut out = vec![exact(
        "total",
        b.total_bytes.0,
        memsize.0,
        "sysctl hw.memsize",
    )];
    out.push(bracket(
        "available",
        b.available_bytes.0,
        a.available_bytes.0,
        theirs.available_bytes.0,
        tol,
        "vm_stat's pages",
    ));
    let parts = |m: &crate::model::SystemMemory| {
        [
            ("app", m.app_bytes),
            ("wired", m.wired_bytes),
            ("compressed", m.compressed_bytes),
            ("cached", m.cached_bytes),
            ("free", m.free_bytes),
        ]
    };
    for ((name, ob), ((_, oa), (_, t))) in parts(b)
        .into_iter()
        .zip(parts(a).into_iter().zip(parts(&theirs)))
    {
        if let (Some(ob), Some(oa), Some(t)) = (ob, oa, t) {
            out.push(bracket(name, ob.0, oa.0, t.0, tol, "vm_stat"));
        }
    }
    if let Some(s) = input.swap {
        let bt = b.swap_total_bytes.map_or(0, |x| x.0);
        let (bu, au) = (
            b.swap_used_bytes.map_or(0, |x| x.0),
            a.swap_used_bytes.map_or(0, |x| x.0),
        );
        out.push(exact("swap total", bt, s.total.0, "sysctl vm.swapusage"));
        out.push(bracket(
            "swap used",
            bu,
            au,
            s.used.0,
            tol,
            "sysctl vm.swapusage",
        ));
    }
    if let Some(k) = input.kernel_level_reported {
        let ours = [before.pressure.kernel_level, after.pressure.kernel_level];
        let c = if ours.contains(&Some(k)) {
            Check::new(
                "kernel level",
                Status::Ok,
                "equal to kern.memorystatus_vm_pressure_level",
            )
        } else {
            Check::new(
                "kernel level",
                Status::Warn,
                "differs from kern.memorystatus_vm_pressure_level (it may have changed between reads)",
            )
        };
        let show = |l: Option<crate::model::KernelLevel>| l.map_or("none", |l| l.as_str());
        out.push(c.figures(show(ours[0]), k.as_str()));
    }
    if let (Some(level), Some(ours)) = (
        input.memorystatus_level,
        crate::macos_vm::free_percent(&input.counters, input.page_size, memsize),
    ) {
        // The kernel's own free percentage against headroom's formula for
        // it on the same counters: 5 points apart is a formula to revisit.
        let near = (ours - level as f64).abs() <= 5.0;
        let c = Check::new(
            "free percent",
            if near { Status::Ok } else { Status::Warn },
            if near {
                "headroom's formula agrees with memory_pressure's free percentage"
            } else {
                "headroom's formula is more than 5 points from memory_pressure's free percentage"
            },
        );
        out.push(c.figures(format!("{ours:.0}%"), format!("{level}%")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SystemMemory;

    /// `free -b` on this project's 2-core CI VM (procps-ng 4, Debian 12),
    /// 2026-12-03.
    const FREE_NOW: &str =
        "               total        used        free      shared  buff/cache   available
Mem:     25276071936  2005622784 13244489728     9797632 10446659584 23270449152
Swap:              0           0           0
";
    /// procps 3.3.9 and older: no "available" column, a -/+ line.
    const FREE_OLD: &str =
        "             total       used       free     shared    buffers     cached
Mem:    8260034560 7811252224  448782336          0  258060288 5408362496
-/+ buffers/cache: 2144829440 6115205120
Swap:   8589930496    1245184 8588685312
";

    fn snap(total: u64, avail: u64, swap_total: u64, swap_used: u64) -> Snapshot {
        Snapshot {
            memory: SystemMemory {
                total_bytes: Bytes(total),
                available_bytes: Bytes(avail),
                swap_total_bytes: Some(Bytes(swap_total)),
                swap_used_bytes: Some(Bytes(swap_used)),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn status_of<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
    }

    #[test]
    fn free_output_old_and_new() {
        assert_eq!(
            parse_free(FREE_NOW),
            Some(Free {
                total: 25_276_071_936,
                available: Some(23_270_449_152),
                swap_total: 0,
                swap_used: 0
            })
        );
        assert_eq!(
            parse_free(FREE_OLD),
            Some(Free {
                total: 8_260_034_560,
                available: None,
                swap_total: 8_589_930_496,
                swap_used: 1_245_184
            })
        );
        assert_eq!(parse_free(""), None);
        assert_eq!(parse_free("total available\nSwap: 1 2 3\n"), None);
    }

    #[test]
    fn linux_figures_pass_inside_the_bracket_and_fail_outside() {
        let total = 25_276_071_936;
        let tol = total / 100; // 241 MiB > 64 MiB
        let theirs = 23_270_449_152;
        // The two samples straddle free's figure: ok.
        let c = compare_linux(
            &snap(total, theirs - 10 * Bytes::MIB, 0, 0),
            &snap(total, theirs + 10 * Bytes::MIB, 0, 0),
            FREE_NOW,
        );
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:?}");
        // Both samples 1 GiB above what free says: beyond the drift.
        let high = theirs + Bytes::GIB;
        let c = compare_linux(&snap(total, high, 0, 0), &snap(total, high, 0, 0), FREE_NOW);
        assert_eq!(status_of(&c, "available").status, Status::Fail);
        // Just inside the tolerance.
        let edge = theirs + tol;
        let c = compare_linux(&snap(total, edge, 0, 0), &snap(total, edge, 0, 0), FREE_NOW);
        assert_eq!(status_of(&c, "available").status, Status::Ok);
        // A total that is not MemTotal is wrong, however small the gap.
        let c = compare_linux(
            &snap(total - 4096, theirs, 0, 0),
            &snap(total, theirs, 0, 0),
            FREE_NOW,
        );
        assert_eq!(status_of(&c, "total").status, Status::Fail);
        // Swap seen by us but not by free.
        let c = compare_linux(
            &snap(total, theirs, Bytes::GIB, 0),
            &snap(total, theirs, Bytes::GIB, 0),
            FREE_NOW,
        );
        assert_eq!(status_of(&c, "swap total").status, Status::Fail);
        // Old procps: no available column is a warning, not a failure.
        let c = compare_linux(
            &snap(8_260_034_560, 6 * Bytes::GIB, 8_589_930_496, 1_245_184),
            &snap(8_260_034_560, 6 * Bytes::GIB, 8_589_930_496, 1_245_184),
            FREE_OLD,
        );
        assert_eq!(status_of(&c, "available").status, Status::Warn);
        assert_eq!(status_of(&c, "swap used").status, Status::Ok);
        assert!(c.iter().all(|c| c.status != Status::Fail), "{c:?}");
        // Unreadable output: one warning.
        let c = compare_linux(&snap(1, 1, 0, 0), &snap(1, 1, 0, 0), "garbage");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Warn);
    }

    /// sample2 (16 GiB Mac, kernel at warning; fixtures/macos/SOURCES.md)
    /// with the sysctl and memory_pressure lines doctor runs beside vm_stat.
    fn mac_text(extra: &str) -> String {
        format!(
            "{}\nhw.memsize: 17179869184\nvm.swapusage: total = 2048.00M  used = 1024.00M  free = 1024.00M  (encrypted)\n{extra}",
            include_str!("../../tests/fixtures/macos/sample2_vm_stat.txt")
        )
    }

    /// A Snapshot as the macOS sampler builds it from the same counters.
    fn mac_snap(text: &str) -> Snapshot {
        let input = crate::explain::parse_input(text).expect("parses");
        let mut memory =
            crate::macos_vm::breakdown(&input.counters, input.page_size, Bytes(17_179_869_184));
        memory.swap_total_bytes = Some(Bytes(2048 * Bytes::MIB));
        memory.swap_used_bytes = Some(Bytes(1024 * Bytes::MIB));
        Snapshot {
            memory,
            ..Default::default()
        }
    }

    #[test]
    fn macos_breakdown_against_vm_stat_and_sysctl() {
        let text = mac_text("");
        let s = mac_snap(&text);
        let c = compare_macos(&s, &s, &text);
        for name in MAC_MEMORY_CHECKS {
            assert_eq!(status_of(&c, name).status, Status::Ok, "{name}: {c:?}");
        }
        // The sampler reading 1 GiB more wired memory than vm_stat: a failure
        // naming wired.
        let mut off = s.clone();
        off.memory.wired_bytes = off.memory.wired_bytes.map(|w| Bytes(w.0 + Bytes::GIB));
        let c = compare_macos(&off, &off, &text);
        assert_eq!(status_of(&c, "wired").status, Status::Fail);
        assert_eq!(status_of(&c, "app").status, Status::Ok);
        // No hw.memsize: nothing to hold the total against.
        let bare = include_str!("../../tests/fixtures/macos/sample2_vm_stat.txt");
        let c = compare_macos(&s, &s, bare);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Warn);
    }

    #[test]
    fn macos_kernel_level_and_free_percent() {
        let text = mac_text("kern.memorystatus_vm_pressure_level: 2\n");
        let mut s = mac_snap(&text);
        s.pressure.kernel_level = Some(crate::model::KernelLevel::Warn);
        let c = compare_macos(&s, &s, &text);
        assert_eq!(status_of(&c, "kernel level").status, Status::Ok, "{c:?}");
        s.pressure.kernel_level = Some(crate::model::KernelLevel::Normal);
        let c = compare_macos(&s, &s, &text);
        assert_eq!(status_of(&c, "kernel level").status, Status::Warn);
    }
}
