//! Pure twins of the macOS FFI: Mach VM counters → the Activity Monitor
//! breakdown, rates from cumulative counters, the kernel's own pressure rule,
//! and KERN_PROCARGS2 decoding. No `cfg`: this runs and is tested on every OS
//! against real samples (tests/fixtures/macos/SOURCES.md).

use crate::model::{Bytes, KernelLevel, SystemMemory};
use std::time::Duration;

/// The host_statistics64(HOST_VM_INFO64) counters headroom reads, in pages.
/// `sys::macos` fills it from the kernel; `explain` fills it from `vm_stat` text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmCounters {
    /// `free_count` as the kernel reports it: it already includes
    /// speculative pages (`vm_stat` prints "Pages free" as free − speculative).
    pub free: u64,
    pub active: u64,
    pub inactive: u64,
    pub speculative: u64,
    pub throttled: u64,
    pub wired: u64,
    pub purgeable: u64,
    /// `external_page_count`: file-backed pageable pages.
    pub external: u64,
    /// `internal_page_count`: anonymous pageable pages.
    pub internal: u64,
    /// `compressor_page_count`: physical pages the compressor occupies.
    pub compressor: u64,
    /// `total_uncompressed_pages_in_compressor`: logical pages it holds.
    pub stored_in_compressor: u64,
    // Cumulative since boot: only their deltas mean anything.
    pub pageins: u64,
    pub pageouts: u64,
    pub swapins: u64,
    pub swapouts: u64,
    pub compressions: u64,
    pub decompressions: u64,
}

impl VmCounters {
    /// The kernel's AVAILABLE_NON_COMPRESSED_MEMORY: active + inactive +
    /// free + speculative (xnu's `vm_page_free_count` excludes speculative;
    /// our `free` includes it, so it is not added twice).
    pub fn anc_pages(&self) -> u64 {
        self.active
            .saturating_add(self.inactive)
            .saturating_add(self.free)
    }

    /// The kernel's AVAILABLE_MEMORY: ANC + pages occupied by the compressor.
    pub fn am_pages(&self) -> u64 {
        self.anc_pages().saturating_add(self.compressor)
    }

    /// ANC / AM, the ratio the kernel's pressure rule compares; `None` when
    /// AM is zero (no counters).
    pub fn anc_am_ratio(&self) -> Option<f64> {
        let am = self.am_pages();
        (am > 0).then(|| self.anc_pages() as f64 / am as f64)
    }

    /// App memory, pages: anonymous − purgeable.
    pub fn app_pages(&self) -> u64 {
        self.internal.saturating_sub(self.purgeable)
    }

    /// Cached files, pages: file-backed + purgeable.
    pub fn cached_pages(&self) -> u64 {
        self.external.saturating_add(self.purgeable)
    }

    /// headroom's "available", pages: truly free (free − speculative) +
    /// file-backed + purgeable — what the kernel can hand out without
    /// compressing or swapping anything (issue 16). Speculative read-ahead
    /// pages are file-backed, so they are counted once, in `external`
    /// (internal + external = active + inactive + speculative on every
    /// fixture). `hw.memsize` is not used: it includes pages no counter
    /// reports, and `total − used` overstated sample2 by 27 % at the red line.
    pub fn available_pages(&self) -> u64 {
        self.free
            .saturating_sub(self.speculative)
            .saturating_add(self.external)
            .saturating_add(self.purgeable)
    }
}

fn pages(n: u64, page_size: u64) -> Bytes {
    Bytes(n.saturating_mul(page_size))
}

/// Counters → SystemMemory, the way Activity Monitor splits memory:
/// App = anonymous − purgeable, Wired, Compressed = pages occupied by the
/// compressor, Cached = file-backed + purgeable, and headroom's "available"
/// = `VmCounters::available_pages` (never more than `total`). Swap is left
/// `None` (it comes from `vm.swapusage`, not from these counters).
pub fn breakdown(c: &VmCounters, page_size: u64, total: Bytes) -> SystemMemory {
    let app = pages(c.app_pages(), page_size);
    let wired = pages(c.wired, page_size);
    let compressed = pages(c.compressor, page_size);
    let available = pages(c.available_pages(), page_size);
    SystemMemory {
        total_bytes: total,
        available_bytes: Bytes(available.0.min(total.0)),
        app_bytes: Some(app),
        wired_bytes: Some(wired),
        compressed_bytes: Some(compressed),
        cached_bytes: Some(pages(c.cached_pages(), page_size)),
        free_bytes: Some(pages(c.free, page_size)),
        swap_total_bytes: None,
        swap_used_bytes: None,
        gpu_wired_limit_mb: None,
        gpu_wired_lwm_mb: None,
    }
}

/// `kern.memorystatus_level`-style share: ANC / total pages × 100.
pub fn free_percent(c: &VmCounters, page_size: u64, total: Bytes) -> Option<f64> {
    let total_pages = total.0.checked_div(page_size)?;
    (total_pages > 0).then(|| c.anc_pages() as f64 * 100.0 / total_pages as f64)
}

// ------------------------------------------------------ the kernel's rule

/// xnu's pressure transitions with the compressor on (vm_pageout.c), as
/// shares of AM for Macs over 3 GB (SOURCES.md).
pub mod rule {
    /// Normal → Warning when ANC < this · AM.
    pub const WARN_BELOW: f64 = 0.5;
    /// Warning (or Critical) → Normal when ANC > this · AM.
    pub const NORMAL_ABOVE: f64 = 0.6;
    /// → Critical when ANC < this · AM.
    pub const CRITICAL_BELOW: f64 = 0.343;
    /// Critical → Warning when ANC > this · AM.
    pub const WARN_ABOVE: f64 = 0.4;
}

/// One step of the kernel's state machine from `prev` given ANC/AM. The
/// kernel tests the bigger jump first: Normal can go straight to Critical,
/// Critical straight back to Normal.
pub fn kernel_rule_step(prev: KernelLevel, ratio: f64) -> KernelLevel {
    use KernelLevel::*;
    match prev {
        Normal if ratio < rule::CRITICAL_BELOW => Critical,
        Normal if ratio < rule::WARN_BELOW => Warn,
        Normal => Normal,
        Warn if ratio > rule::NORMAL_ABOVE => Normal,
        Warn if ratio < rule::CRITICAL_BELOW => Critical,
        Warn => Warn,
        Critical if ratio > rule::NORMAL_ABOVE => Normal,
        Critical if ratio > rule::WARN_ABOVE => Warn,
        Critical => Critical,
    }
}

/// The kernel rule applied to counters; with no counters (AM = 0) the level
/// stays where it was. The live level is the sysctl: this is a predictor for
/// `explain` and tests (the kernel's divisors are tunables, and it also goes
/// critical when the compressor runs out of space, which counters do not show).
pub fn kernel_rule(prev: KernelLevel, c: &VmCounters) -> KernelLevel {
    match c.anc_am_ratio() {
        Some(r) => kernel_rule_step(prev, r),
        None => prev,
    }
}

// ------------------------------------------------------------ rates

/// Bigger backwards steps than this are a reset, not a wrap: no interval
/// moves 2^40 pages.
const MAX_WRAP_DELTA: u64 = 1 << 40;

/// How far a cumulative counter moved. A counter that went backwards is
/// either a u64 wrap (tiny forward distance through zero: counted) or a
/// reset (reboot, a trace from another machine: `None`, skip the interval).
pub fn counter_delta(prev: u64, now: u64) -> Option<u64> {
    let d = now.wrapping_sub(prev);
    (now >= prev || d < MAX_WRAP_DELTA).then_some(d)
}

/// Per-second rate of a counter between two readings `dt` apart, in units
/// of `scale` (page size for pages → bytes). `None` on reset or dt = 0.
pub fn counter_rate(prev: u64, now: u64, dt: Duration, scale: u64) -> Option<f64> {
    let secs = dt.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    counter_delta(prev, now).map(|d| d as f64 * scale as f64 / secs)
}

/// Rates from one counter reading to the next.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VmRates {
    /// Pages written to swap, as bytes per second.
    pub swapout_bytes_per_sec: Option<f64>,
    /// Pages compressed, as (uncompressed) bytes per second.
    pub compression_bytes_per_sec: Option<f64>,
    /// Pages read in from files and swap, as bytes per second.
    pub pagein_bytes_per_sec: Option<f64>,
}

/// Remembers the previous reading so each sample yields rates. The first
/// reading, a reset, or a repeated timestamp yields `None`s. Readings closer
/// than `min_interval` to the previous one repeat the last rates and keep
/// the older base, so a cached kernel answer does not read as zero.
#[derive(Clone, Debug, Default)]
pub struct RateTracker {
    prev: Option<(Duration, VmCounters)>,
    last: VmRates,
    min_interval: Duration,
}

impl RateTracker {
    pub fn new() -> RateTracker {
        RateTracker::default()
    }

    pub fn with_min_interval(min_interval: Duration) -> RateTracker {
        RateTracker {
            min_interval,
            ..RateTracker::default()
        }
    }

    pub fn update(&mut self, at: Duration, c: &VmCounters, page_size: u64) -> VmRates {
        let out = match &self.prev {
            Some((t0, _)) if at > *t0 && at - *t0 < self.min_interval => return self.last,
            Some((t0, p)) if at > *t0 => {
                let dt = at - *t0;
                VmRates {
                    swapout_bytes_per_sec: counter_rate(p.swapouts, c.swapouts, dt, page_size),
                    compression_bytes_per_sec: counter_rate(
                        p.compressions,
                        c.compressions,
                        dt,
                        page_size,
                    ),
                    pagein_bytes_per_sec: counter_rate(p.pageins, c.pageins, dt, page_size),
                }
            }
            _ => VmRates::default(),
        };
        self.prev = Some((at, *c));
        self.last = out;
        out
    }
}

// ------------------------------------------------------------ swap

/// `vm.swapusage` (struct xsw_usage), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapUsage {
    pub total: Bytes,
    pub used: Bytes,
    pub free: Bytes,
    pub encrypted: bool,
}

// ------------------------------------------------------------ processes

/// Decode a KERN_PROCARGS2 buffer: `int argc`, the exec path, NUL padding,
/// then `argc` NUL-terminated arguments (then the environment, ignored).
/// Returns the arguments; `None` when the buffer is too short or malformed.
pub fn parse_procargs2(buf: &[u8]) -> Option<Vec<String>> {
    let argc_bytes: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let argc = i32::from_ne_bytes(argc_bytes);
    let argc = usize::try_from(argc).ok()?;
    let rest = &buf[4..];
    // Skip the exec path, then the NULs that pad it.
    let path_end = rest.iter().position(|&b| b == 0)?;
    let mut i = path_end;
    while rest.get(i) == Some(&0) {
        i += 1;
    }
    let mut args = Vec::with_capacity(argc.min(256));
    let mut cur = &rest[i..];
    while args.len() < argc {
        if cur.is_empty() {
            break; // truncated: keep what we have
        }
        let end = cur.iter().position(|&b| b == 0).unwrap_or(cur.len());
        args.push(String::from_utf8_lossy(&cur[..end]).into_owned());
        cur = cur.get(end + 1..).unwrap_or(&[]);
    }
    Some(args)
}

/// `proc_listpids`' answer → how many pids it wrote into a buffer of
/// `capacity` pids. libproc returns the number of *bytes* written, and on
/// failure 0 with errno set, not −1 (xnu libsyscall/wrappers/libproc/
/// libproc.c): 0 is an error, never an empty system — headroom itself is
/// always listed. Issue 16: taking 0 as "no processes" marked every tracked
/// job as exited.
pub fn listed_pid_count(bytes: i32, capacity: usize) -> Option<usize> {
    let bytes = usize::try_from(bytes).ok().filter(|&b| b > 0)?;
    Some((bytes / size_of::<i32>()).min(capacity))
}

/// An `audit_token_t` that names `pid` at pid version `idversion` (from
/// PROC_PIDUNIQIDENTIFIERINFO): the two words xnu's `proc_find_audit_token`
/// compares (`val[5]` the pid, `val[7]` the pid version, bumped at every
/// fork and exec). The rest identify the sender's credentials in a real
/// token; signalling by token does not read them.
pub fn audit_token_for(pid: i32, idversion: i32) -> [u32; 8] {
    let mut t = [0u32; 8];
    t[5] = pid as u32;
    t[7] = idversion as u32;
    t
}

/// `pbi_start_tvsec`/`pbi_start_tvusec` → microseconds since the epoch, the
/// macOS `MlxProcess::start_time`.
pub fn start_time_us(sec: u64, usec: u64) -> u64 {
    sec.saturating_mul(1_000_000).saturating_add(usec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 16384;

    /// Counters with a chosen ANC/AM: `anc` pages available, `comp` compressed.
    fn with_ratio(anc: u64, comp: u64) -> VmCounters {
        VmCounters {
            active: anc / 2,
            inactive: anc - anc / 2,
            compressor: comp,
            ..Default::default()
        }
    }

    #[test]
    fn kernel_rule_timeline_has_the_kernels_hysteresis() {
        use KernelLevel::*;
        // AM = 1000 pages throughout; ANC falls, crosses warn and critical,
        // then recovers. Each row: ANC, expected level after the step.
        let timeline = [
            (900, Normal),
            (550, Normal),   // above 0.5
            (490, Warn),     // below 0.5: warn
            (580, Warn),     // back above 0.5 but not 0.6: hysteresis holds warn
            (350, Warn),     // below 0.5, not yet below 0.343
            (340, Critical), // below 0.343
            (390, Critical), // above 0.343 but not 0.4: stays critical
            (410, Warn),     // above 0.4: back to warn
            (600, Warn),     // exactly 0.6 is not above it
            (610, Normal),   // above 0.6
            (300, Critical), // straight from normal to critical
            (700, Normal),   // straight from critical to normal
        ];
        let mut level = Normal;
        for (i, (anc, want)) in timeline.iter().enumerate() {
            level = kernel_rule(level, &with_ratio(*anc, 1000 - anc));
            assert_eq!(level, *want, "step {i}: ANC {anc}/1000");
        }
        // No counters: the level holds.
        assert_eq!(kernel_rule(Critical, &VmCounters::default()), Critical);
    }

    #[test]
    fn rates_come_from_deltas_and_survive_wrap_and_reset() {
        let mut t = RateTracker::new();
        let mut c = VmCounters {
            swapouts: 1_000,
            compressions: 50_000,
            ..Default::default()
        };
        assert_eq!(
            t.update(Duration::from_secs(0), &c, PAGE),
            VmRates::default(),
            "first reading has no rate"
        );

        c.swapouts += 64; // 64 pages in 2 s = 32 pages/s = 512 KiB/s
        c.compressions += 2_000;
        let r = t.update(Duration::from_secs(2), &c, PAGE);
        assert_eq!(r.swapout_bytes_per_sec, Some(32.0 * PAGE as f64));
        assert_eq!(r.compression_bytes_per_sec, Some(1_000.0 * PAGE as f64));

        // Same timestamp again (a rate-limited re-read): no rate, no panic.
        assert_eq!(
            t.update(Duration::from_secs(2), &c, PAGE)
                .swapout_bytes_per_sec,
            None
        );

        // Idle second: zero, not None.
        let r = t.update(Duration::from_secs(3), &c, PAGE);
        assert_eq!(r.swapout_bytes_per_sec, Some(0.0));

        // A u64 wrap counts the short way through zero.
        c.swapouts = u64::MAX - 9;
        t.update(Duration::from_secs(4), &c, PAGE);
        c.swapouts = 10; // 20 pages later
        let r = t.update(Duration::from_secs(5), &c, PAGE);
        assert_eq!(r.swapout_bytes_per_sec, Some(20.0 * PAGE as f64));

        // A reset (counter far smaller) skips one interval, then resumes.
        c.swapouts = 5_000_000_000;
        t.update(Duration::from_secs(6), &c, PAGE);
        c.swapouts = 3;
        assert_eq!(
            t.update(Duration::from_secs(7), &c, PAGE)
                .swapout_bytes_per_sec,
            None
        );
        c.swapouts = 7;
        let r = t.update(Duration::from_secs(8), &c, PAGE);
        assert_eq!(r.swapout_bytes_per_sec, Some(4.0 * PAGE as f64));
    }

    #[test]
    fn min_interval_bridges_cached_kernel_answers() {
        // 4 Hz polling against a kernel that re-serves a cached copy: the
        // rate is measured over >= 1 s, never reads as 0 then a burst.
        let mut t = RateTracker::with_min_interval(Duration::from_secs(1));
        let mut c = VmCounters::default();
        t.update(Duration::ZERO, &c, PAGE);
        for ms in [250, 500, 750] {
            let r = t.update(Duration::from_millis(ms), &c, PAGE);
            assert_eq!(
                r.swapout_bytes_per_sec, None,
                "no full window yet at {ms} ms"
            );
        }
        c.swapouts = 100;
        let r = t.update(Duration::from_millis(1000), &c, PAGE);
        assert_eq!(r.swapout_bytes_per_sec, Some(100.0 * PAGE as f64));
        let r = t.update(Duration::from_millis(1250), &c, PAGE);
        assert_eq!(
            r.swapout_bytes_per_sec,
            Some(100.0 * PAGE as f64),
            "last rate repeats"
        );
    }

    #[test]
    fn counter_delta_edges() {
        assert_eq!(counter_delta(5, 5), Some(0));
        assert_eq!(counter_delta(5, 9), Some(4));
        assert_eq!(counter_delta(u64::MAX, 0), Some(1));
        assert_eq!(counter_delta(1 << 41, 0), None);
        assert_eq!(counter_rate(0, 10, Duration::ZERO, PAGE), None);
    }

    #[test]
    fn breakdown_saturates_instead_of_wrapping() {
        // purgeable > anonymous, speculative > free, or available > total,
        // must not underflow or exceed the total.
        let c = VmCounters {
            internal: 1,
            purgeable: 5,
            wired: 10,
            speculative: 3,
            free: 1,
            ..Default::default()
        };
        assert_eq!(
            c.available_pages(),
            5,
            "0 truly free + 0 file + 5 purgeable"
        );
        let m = breakdown(&c, PAGE, Bytes(PAGE));
        assert_eq!(m.app_bytes, Some(Bytes(0)));
        assert_eq!(m.available_bytes, Bytes(PAGE), "capped at the total");
        assert_eq!(free_percent(&c, 0, Bytes(1)), None);
        assert_eq!(free_percent(&c, PAGE, Bytes(0)), None);
    }

    fn procargs(argc: i32, path: &str, pad: usize, args: &[&str], env: &[&str]) -> Vec<u8> {
        let mut b = argc.to_ne_bytes().to_vec();
        b.extend_from_slice(path.as_bytes());
        b.extend(vec![0u8; 1 + pad]);
        for a in args.iter().chain(env) {
            b.extend_from_slice(a.as_bytes());
            b.push(0);
        }
        b
    }

    #[test]
    fn procargs2_decodes_args_and_skips_path_padding_and_env() {
        let b = procargs(
            4,
            "/opt/homebrew/bin/python3.12",
            7,
            &["python3", "-m", "mlx_lm.lora", "--train"],
            &["HOME=/Users/a"],
        );
        assert_eq!(
            parse_procargs2(&b),
            Some(vec![
                "python3".to_string(),
                "-m".into(),
                "mlx_lm.lora".into(),
                "--train".into()
            ])
        );
        // Truncated mid-arguments: what is there.
        let cut = &b[..b.len() - "--train".len() - "HOME=/Users/a".len() - 2];
        assert_eq!(parse_procargs2(cut).map(|a| a.len()), Some(3));
        // Garbage and short buffers: None, no panic.
        assert_eq!(parse_procargs2(&[1, 0]), None);
        assert_eq!(parse_procargs2(&(-1i32).to_ne_bytes()), None);
        assert_eq!(
            parse_procargs2(&procargs(0, "/bin/x", 0, &[], &[])),
            Some(vec![])
        );
        let no_nul = [2u8, 0, 0, 0, b'a', b'b'];
        assert_eq!(parse_procargs2(&no_nul), None);
    }

    #[test]
    fn proc_listpids_zero_is_an_error_and_bytes_become_pids() {
        // libproc answers 0 (errno set) on failure: not "no processes".
        assert_eq!(listed_pid_count(0, 100), None);
        assert_eq!(listed_pid_count(-1, 100), None);
        // Bytes, not pids: 3 pids are 12 bytes; a partial pid is dropped.
        assert_eq!(listed_pid_count(12, 100), Some(3));
        assert_eq!(listed_pid_count(14, 100), Some(3));
        // Never more than the buffer holds.
        assert_eq!(listed_pid_count(4000, 64), Some(64));
    }

    #[test]
    fn audit_token_names_pid_and_pid_version_only() {
        // xnu proc_find_audit_token: pid in val[5], pid version in val[7].
        let t = audit_token_for(4242, 17);
        assert_eq!(t, [0, 0, 0, 0, 0, 4242, 0, 17]);
        assert_eq!(audit_token_for(7, -1)[7], u32::MAX, "bit pattern kept");
    }

    #[test]
    fn start_time_in_microseconds() {
        assert_eq!(start_time_us(1_700_000_000, 250), 1_700_000_000_000_250);
    }
}
