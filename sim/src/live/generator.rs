//! Is the load generator the bottleneck? Its own CPU time (from `/proc/self/stat`) and
//! the whole machine's (from `/proc/stat`) over the measured window, written next to the
//! report as `generator.json`.
//!
//! A generator that kept its schedule has a small send delay (in the report); one that also
//! used well under one core of its own cannot have been what limited the broker.

use std::fmt::Write as _;

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux ABI that
/// this runs on).
const USER_HZ: f64 = 100.0;

/// CPU counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSample {
    /// This process: user + system seconds.
    pub process_s: f64,
    /// The machine: busy seconds summed over CPUs (everything but idle and iowait).
    pub machine_busy_s: f64,
    /// The machine: all seconds summed over CPUs.
    pub machine_total_s: f64,
}

impl CpuSample {
    /// Reads the counters now; zeros where `/proc` is not available.
    pub fn now() -> CpuSample {
        let mut s = CpuSample::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which is in parentheses and may hold spaces.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
                let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                s.process_s = (tick(11) + tick(12)) / USER_HZ;
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
        {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest is inside user).
            let total: f64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
            s.machine_total_s = total / USER_HZ;
            s.machine_busy_s = (total - idle) / USER_HZ;
        }
        s
    }
}

/// The generator's share of the machine over the measured window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GeneratorStats {
    /// Wall seconds of the window.
    pub wall_s: f64,
    /// CPU seconds this process used in it.
    pub cpu_s: f64,
    /// CPU seconds the whole machine used in it (the broker, the generator, the rest).
    pub machine_busy_s: f64,
    /// CPUs of the machine.
    pub cpus: usize,
    /// Worker threads of the generator's runtime.
    pub threads: usize,
}

impl GeneratorStats {
    /// The statistics between two samples `wall_s` seconds apart.
    pub fn between(a: CpuSample, b: CpuSample, wall_s: f64, threads: usize) -> Self {
        GeneratorStats {
            wall_s,
            cpu_s: (b.process_s - a.process_s).max(0.0),
            machine_busy_s: (b.machine_busy_s - a.machine_busy_s).max(0.0),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
        }
    }

    /// Cores the generator kept busy on average (1.0 = one whole core).
    pub fn cores(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.cpu_s / self.wall_s
        } else {
            0.0
        }
    }

    /// Cores the whole machine kept busy on average.
    pub fn machine_cores(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.machine_busy_s / self.wall_s
        } else {
            0.0
        }
    }

    /// `generator.json`.
    pub fn to_json(&self, send_delay_p99_us: Option<u64>) -> String {
        let mut s = String::from("{\n");
        let _ = writeln!(s, "  \"wall_s\": {:.3},", self.wall_s);
        let _ = writeln!(s, "  \"cpu_s\": {:.3},", self.cpu_s);
        let _ = writeln!(s, "  \"cores\": {:.3},", self.cores());
        let _ = writeln!(s, "  \"machine_busy_s\": {:.3},", self.machine_busy_s);
        let _ = writeln!(s, "  \"machine_cores\": {:.3},", self.machine_cores());
        let _ = writeln!(s, "  \"cpus\": {},", self.cpus);
        let _ = writeln!(s, "  \"threads\": {},", self.threads);
        match send_delay_p99_us {
            Some(v) => {
                let _ = writeln!(s, "  \"send_delay_p99_us\": {v}");
            }
            None => s.push_str("  \"send_delay_p99_us\": null\n"),
        }
        s.push_str("}\n");
        s
    }

    /// Reads back the numbers [`to_json`](Self::to_json) wrote: `(cores, machine_cores,
    /// cpus, send_delay_p99_us)`.
    pub fn read_json(text: &str) -> Option<(f64, f64, usize, Option<u64>)> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some((
            v.get("cores")?.as_f64()?,
            v.get("machine_cores")?.as_f64()?,
            v.get("cpus")?.as_u64()? as usize,
            v.get("send_delay_p99_us").and_then(|x| x.as_u64()),
        ))
    }
}

/// One row of `generator.csv`, which `stampede compare` writes beside a comparison of
/// live runs: the generator's numbers of one run, read from its `generator.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneratorRow {
    /// The run's scenario.
    pub scenario: String,
    /// The run's label in the comparison.
    pub label: String,
    /// Cores the generator used over the measured window, 3 decimals.
    pub generator_cores: String,
    /// Cores the whole machine used over the measured window, 3 decimals.
    pub machine_cores: String,
    /// CPUs of the machine.
    pub cpus: usize,
    /// p99 of the send delay, when the run had sends.
    pub send_delay_p99_us: Option<u64>,
}

impl GeneratorRow {
    /// The row of a run whose `generator.json` held `(cores, machine_cores, cpus,
    /// send_delay_p99_us)`, as [`GeneratorStats::read_json`] returns them.
    pub fn new(
        scenario: &str,
        label: &str,
        (cores, machine_cores, cpus, send_delay_p99_us): (f64, f64, usize, Option<u64>),
    ) -> GeneratorRow {
        GeneratorRow {
            scenario: scenario.to_owned(),
            label: label.to_owned(),
            generator_cores: format!("{cores:.3}"),
            machine_cores: format!("{machine_cores:.3}"),
            cpus,
            send_delay_p99_us,
        }
    }
}

/// The columns of `generator.csv`.
pub const GENERATOR_CSV_HEADER: [&str; 6] = [
    "scenario",
    "label",
    "generator_cores",
    "machine_cores",
    "cpus",
    "send_delay_p99_us",
];

/// The text of `generator.csv`: the header, then one line per row (fields quoted only when
/// they hold a comma, a quote or a line break).
pub fn generator_csv(rows: &[GeneratorRow]) -> Result<String, csv::Error> {
    let mut out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    out.write_record(GENERATOR_CSV_HEADER)?;
    for row in rows {
        out.serialize(row)?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_csv_has_a_header_and_one_line_per_run() {
        let rows = [
            GeneratorRow::new("bench-a", "stampede", (0.0291, 0.0854, 2, Some(1484))),
            GeneratorRow::new("bench-a", "odd, label", (1.0, 2.0, 4, None)),
        ];
        assert_eq!(
            generator_csv(&rows).unwrap(),
            "scenario,label,generator_cores,machine_cores,cpus,send_delay_p99_us\n\
             bench-a,stampede,0.029,0.085,2,1484\n\
             bench-a,\"odd, label\",1.000,2.000,4,\n"
        );
    }

    #[test]
    fn counters_grow_with_work_and_round_trip() {
        let a = CpuSample::now();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSample::now();
        assert!(b.process_s >= a.process_s);
        assert!(b.machine_total_s >= a.machine_total_s);
        let g = GeneratorStats::between(a, b, 2.0, 2);
        let (cores, machine, cpus, p99) = GeneratorStats::read_json(&g.to_json(Some(7))).unwrap();
        assert!((cores - g.cores()).abs() < 0.001);
        assert!(machine >= 0.0);
        assert!(cpus >= 1);
        assert_eq!(p99, Some(7));
    }
}
