//! This machine for `headroom advise`: the chip (and what the guide and
//! Apple say about it), total and available memory, the current level.

use serde::Serialize;

/// What is known about one chip.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChipInfo {
    /// The guide's "Memory Bandwidth" column, GB/s.
    pub guide_bandwidth_gbps: Option<f64>,
    /// The guide's "Practical ML Limit" column.
    pub guide_practical_limit: Option<&'static str>,
    /// Apple's published figure (highest configuration), GB/s.
    pub apple_bandwidth_gbps: Option<f64>,
}

/// (family, guide bandwidth, guide limit, Apple bandwidth). The guide lists
/// M1 / M1 Pro / M1 Max / M1 Ultra / "M2 Series: similar to M1" / M3 Max /
/// M3 Ultra; Apple's figures come from its tech-spec pages.
const CHIPS: &[(&str, Option<f64>, Option<&str>, f64)] = &[
    ("M1 Ultra", Some(800.0), Some("65B models"), 800.0),
    ("M1 Max", Some(400.0), Some("30B models"), 400.0),
    ("M1 Pro", Some(200.0), Some("13B models"), 200.0),
    ("M1", Some(200.0), Some("7B models"), 68.25),
    ("M2 Ultra", Some(800.0), Some("65B models"), 800.0),
    ("M2 Max", Some(400.0), Some("30B models"), 400.0),
    ("M2 Pro", Some(200.0), Some("13B models"), 200.0),
    ("M2", Some(200.0), Some("7B models"), 100.0),
    ("M3 Ultra", Some(800.0), Some("180B+ models"), 819.0),
    ("M3 Max", Some(400.0), Some("30B+ models"), 400.0),
    ("M3 Pro", None, None, 150.0),
    ("M3", None, None, 100.0),
    ("M4 Max", None, None, 546.0),
    ("M4 Pro", None, None, 273.0),
    ("M4", None, None, 120.0),
];

/// The chip family in a brand string ("Apple M3 Ultra" → "M3 Ultra").
fn chip_family(brand: &str) -> Option<&'static str> {
    let words: Vec<&str> = brand.split_whitespace().collect();
    CHIPS.iter().map(|c| c.0).find(|fam| {
        let f: Vec<&str> = fam.split_whitespace().collect();
        words.windows(f.len()).any(|w| w == f.as_slice())
    })
}

pub fn chip_info(brand: &str) -> Option<ChipInfo> {
    let fam = chip_family(brand)?;
    let c = CHIPS.iter().find(|c| c.0 == fam)?;
    Some(ChipInfo {
        guide_bandwidth_gbps: c.1,
        guide_practical_limit: c.2,
        apple_bandwidth_gbps: Some(c.3),
    })
}

/// The CPU model from /proc/cpuinfo ("model name", or "Hardware"/"Model"
/// on ARM boards that have no model name).
pub fn parse_cpuinfo_model(text: &str) -> Option<String> {
    for key in ["model name", "Hardware", "Model"] {
        let found = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| v.trim().to_string())
        });
        if found.is_some() {
            return found;
        }
    }
    None
}

/// This machine's CPU brand string, when it can be read.
pub fn cpu_brand() -> Option<String> {
    #[cfg(target_os = "macos")]
    {
        crate::sys::macos::cpu_brand().ok()
    }
    #[cfg(not(target_os = "macos"))]
    {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| parse_cpuinfo_model(&t))
    }
}

/// The machine as advise sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub chip: Option<String>,
    pub chip_info: Option<ChipInfo>,
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub level: String,
    /// Apple Silicon's GPU wired limit; absent where unknown (Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_wired: Option<GpuWired>,
}

/// The GPU wired limit in force and the highest one that leaves macOS the
/// guide's headroom (src/wired.rs).
#[derive(Clone, Debug, Serialize)]
pub struct GpuWired {
    /// `iogpu.wired_limit_mb` (0: the system default).
    pub limit_mb: u64,
    pub limit_bytes: u64,
    pub safe_limit_mb: u64,
}

/// Sample this machine once (the same sampler and classifier as `status`).
pub fn this_machine(cfg: &crate::config::Config) -> Result<Machine, crate::Error> {
    let (mut sampler, _) = crate::sample::open(cfg, std::time::Instant::now())?;
    let snap = sampler.sample()?;
    let c = crate::classify::classify_once(&snap, &cfg.thresholds);
    let level = c.level;
    let gpu_wired = crate::wired::judge(&snap.memory, &c.lines).map(|v| GpuWired {
        limit_mb: v.limit_mb,
        limit_bytes: v.limit.0,
        safe_limit_mb: v.safe_mb,
    });
    let chip = cpu_brand();
    Ok(Machine {
        chip_info: chip.as_deref().and_then(chip_info),
        chip,
        total_bytes: snap.memory.total_bytes.0,
        available_bytes: snap.memory.available_bytes.0,
        level: level.as_str().to_string(),
        gpu_wired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_from_brand_strings() {
        // machdep.cpu.brand_string as macOS prints it.
        type Case<'a> = (&'a str, Option<&'a str>, Option<f64>, Option<&'a str>);
        let cases: &[Case] = &[
            ("Apple M1", Some("M1"), Some(200.0), Some("7B models")),
            (
                "Apple M1 Pro",
                Some("M1 Pro"),
                Some(200.0),
                Some("13B models"),
            ),
            (
                "Apple M1 Max",
                Some("M1 Max"),
                Some(400.0),
                Some("30B models"),
            ),
            (
                "Apple M1 Ultra",
                Some("M1 Ultra"),
                Some(800.0),
                Some("65B models"),
            ),
            (
                "Apple M2 Max",
                Some("M2 Max"),
                Some(400.0),
                Some("30B models"),
            ),
            (
                "Apple M3 Max",
                Some("M3 Max"),
                Some(400.0),
                Some("30B+ models"),
            ),
            (
                "Apple M3 Ultra",
                Some("M3 Ultra"),
                Some(800.0),
                Some("180B+ models"),
            ),
            ("Apple M4 Pro", Some("M4 Pro"), None, None),
            ("Apple M10", None, None, None),
            ("Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz", None, None, None),
            ("AMD EPYC 7B13", None, None, None),
        ];
        for (brand, fam, bw, limit) in cases {
            assert_eq!(chip_family(brand), *fam, "{brand}");
            let info = chip_info(brand);
            assert_eq!(
                info.as_ref().and_then(|i| i.guide_bandwidth_gbps),
                *bw,
                "{brand}"
            );
            assert_eq!(
                info.as_ref().and_then(|i| i.guide_practical_limit),
                *limit,
                "{brand}"
            );
        }
        // The guide's M1 figure is the M1 Pro's; Apple's M1 is 68.25 GB/s.
        assert_eq!(
            chip_info("Apple M1").and_then(|i| i.apple_bandwidth_gbps),
            Some(68.25)
        );
    }

    #[test]
    fn cpuinfo_model() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            parse_cpuinfo_model(x86).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        let arm =
            "processor\t: 0\nBogoMIPS\t: 48.00\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            parse_cpuinfo_model(arm).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(parse_cpuinfo_model("processor : 0\n"), None);
    }
}
