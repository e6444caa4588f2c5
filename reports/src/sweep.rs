//! `sweep.html`: a sweep's metrics against its load key, one line per series (a
//! combination of the other varied keys), with the knee marked and stated.
//!
//! Plain data in ([`SweepPage`], filled by the simulator's `stampede sweep`), one
//! self-contained page out, the same bytes for the same input (no timestamps; floats
//! printed the shortest way that reads back the same). Each chart is a
//! `<figure class="chart" data-chart="METRIC">`, as in `report.html`; the knee of each
//! series is a shaded band from the knee to the first failing value, labelled.

use std::fmt::Write as _;

use crate::charts::{self, Axis, Band, Chart, Dots, Line, PALETTE, RED_C};
use crate::html::{figure, page_start};
use crate::markup::escape;

/// How a chart's y axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YKind {
    /// Milliseconds, from 0.
    Ms,
    /// A ratio (0 to 1), zoomed to the values.
    Ratio,
    /// A count, from 0.
    Count,
}

/// One line: a series' worst value over the seeds at each load value, and whether every
/// seed met the objective there. `None`: no data.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepLine {
    /// The series (`brokers=2`, or `all`).
    pub label: String,
    /// `(load value, value, objective met)`, by load value.
    pub points: Vec<(f64, Option<f64>, bool)>,
}

/// One chart.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepChart {
    /// The metric (the figure's `data-chart`).
    pub name: String,
    /// The title.
    pub title: String,
    /// The y axis' description.
    pub y_desc: String,
    /// How the y axis is drawn.
    pub kind: YKind,
    /// One line per series.
    pub lines: Vec<SweepLine>,
    /// Shown instead of data when there is none (e.g. broker CPU without a cost model).
    pub empty_note: Option<String>,
}

/// One series' knee.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepKnee {
    /// The series.
    pub series: String,
    /// The knee (`None`: already the first value fails).
    pub knee: Option<f64>,
    /// The first failing value (`None`: none fails).
    pub first_fail: Option<f64>,
    /// What to say about it.
    pub sentence: String,
}

/// Everything `sweep.html` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPage {
    /// The page title.
    pub title: String,
    /// The command that made the sweep.
    pub command: String,
    /// The load key (x axis).
    pub x_key: String,
    /// The objective.
    pub objective: String,
    /// Seeds per point.
    pub seeds: usize,
    /// One per series.
    pub knees: Vec<SweepKnee>,
    /// The charts.
    pub charts: Vec<SweepChart>,
    /// Notes shown under the knees.
    pub notes: Vec<String>,
}

fn fmt_x(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn chart(page: &SweepPage, c: &SweepChart) -> Chart {
    let xs = c.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let x_max = xs.clone().fold(0.0f64, f64::max);
    let values: Vec<f64> = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    let y_max = values.iter().copied().fold(0.0f64, f64::max);
    let y_min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let y = match c.kind {
        YKind::Ms => Axis::linear(y_max, charts::fmt_axis_ms),
        YKind::Count => Axis::linear(y_max, charts::fmt_axis_count),
        YKind::Ratio => {
            let lo = if y_min.is_finite() {
                y_min.min(1.0)
            } else {
                0.0
            };
            let hi = y_max.max(1.0);
            Axis::span(
                if hi - lo < 1e-3 { hi - 1e-3 } else { lo },
                hi,
                charts::fmt_axis_ratio,
            )
        }
    };
    let lines = c
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut line = Line::new(l.label.clone(), PALETTE[i % PALETTE.len()]);
            line.points = l.points.iter().map(|p| (p.0, p.1)).collect();
            line
        })
        .collect();
    let failing: Vec<(f64, f64)> = c
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .filter(|p| !p.2)
        .filter_map(|p| Some((p.0, p.1?)))
        .collect();
    let dots = if failing.is_empty() {
        vec![]
    } else {
        vec![Dots {
            name: "objective not met".into(),
            color: RED_C,
            cross: true,
            points: failing,
        }]
    };
    let bands = page
        .knees
        .iter()
        .filter_map(|k| {
            let x = k.knee?;
            let label = if page.knees.len() > 1 {
                format!("knee {}: {}", k.series, fmt_x(x))
            } else {
                format!("knee {}", fmt_x(x))
            };
            Some(Band {
                start_s: x.min(k.first_fail.unwrap_or(x)),
                end_s: Some(x.max(k.first_fail.unwrap_or(x))),
                label,
            })
        })
        .collect();
    Chart {
        title: c.title.clone(),
        x_desc: page.x_key.clone(),
        y_desc: c.y_desc.clone(),
        x: Axis::linear(x_max, charts::fmt_axis_count),
        y,
        y2: None,
        bands,
        lines,
        dots,
        empty_note: c.empty_note.clone(),
    }
}

/// The page.
pub fn sweep_page(page: &SweepPage) -> String {
    let mut out = String::new();
    page_start(&mut out, &page.title);
    let _ = write!(
        out,
        "<header>\n<h1>{}</h1>\n<dl class=\"facts\">\n<dt>command</dt><dd><code>{}</code></dd>\n\
         <dt>objective</dt><dd><code>{}</code> (every seed must meet it; a metric without data does not)</dd>\n\
         <dt>load key</dt><dd><code>{}</code></dd>\n<dt>seeds per point</dt><dd>{}</dd>\n</dl>\n</header>\n",
        escape(&page.title),
        escape(&page.command),
        escape(&page.objective),
        escape(&page.x_key),
        page.seeds
    );
    out.push_str("<h2>Knee</h2>\n<ul class=\"knees\">\n");
    for k in &page.knees {
        let _ = writeln!(out, "<li>{}</li>", escape(&k.sentence));
    }
    out.push_str("</ul>\n");
    for n in &page.notes {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(n));
    }
    out.push_str("<h2>Metrics against the load</h2>\n");
    for c in &page.charts {
        let caption = format!(
            "{}: the worst value over the seeds at each {}; crosses mark points that do not meet the objective; the shaded band runs from the knee to the first failing value.",
            c.name, page.x_key
        );
        figure(&mut out, &c.name, &chart(page, c), &caption);
    }
    out.push_str("<footer>stampede sweep; sweep.csv holds every run.</footer>\n</body>\n</html>\n");
    out
}
