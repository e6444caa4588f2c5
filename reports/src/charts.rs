//! The SVG charts of `report.html` and `compare.html`, drawn with `plotters`.
//!
//! A [`Chart`] is a plain description (axes, lines, points, shaded fault bands) that
//! [`render`] turns into one `<svg>` element. Both axes are linear to plotters: a
//! logarithmic axis is drawn by plotting `log10` of the values and labelling the ticks
//! with the values they stand for, so every tick position and label is chosen here and
//! the output is the same for the same input. Text is left for the browser to lay out
//! (plotters' SVG backend without a font feature only estimates text widths), so no
//! font file or system font library is needed.

use std::fmt::Display;
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
pub(crate) use plotters::style::RGBColor;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width of every chart, in SVG pixels.
pub(crate) const WIDTH: u32 = 1000;
/// Height of every chart, in SVG pixels.
pub(crate) const HEIGHT: u32 = 380;

/// The Okabe–Ito palette, readable for colour-blind people, without its yellow.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];
pub(crate) const BLUE_C: RGBColor = PALETTE[0];
pub(crate) const ORANGE_C: RGBColor = PALETTE[1];
pub(crate) const GREEN_C: RGBColor = PALETTE[2];
pub(crate) const RED_C: RGBColor = PALETTE[3];
pub(crate) const PURPLE_C: RGBColor = PALETTE[4];
pub(crate) const SKY_C: RGBColor = PALETTE[5];

/// Rows of fault labels at the top of a time chart.
const LABEL_ROWS: usize = 4;

/// Fault shading and its labels.
const BAND_FILL: RGBColor = RGBColor(120, 120, 120);
const BAND_TEXT: RGBColor = RGBColor(70, 70, 70);
const GRID: RGBColor = RGBColor(200, 200, 200);

/// One axis: its range in plotted units, tick positions, and how a tick is labelled.
#[derive(Clone)]
pub(crate) struct Axis {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
    log: bool,
    fmt: fn(f64) -> String,
}

impl Axis {
    /// A linear axis from 0 to a little above `max`, with up to 10 round, whole-number
    /// ticks.
    pub(crate) fn linear(max: f64, fmt: fn(f64) -> String) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        // Every linear axis here counts whole things (messages, nodes, ms, s).
        let step = nice_step(max / 8.0).max(1.0);
        // Leave a little room above the largest value so that a line at the maximum
        // does not merge with the frame.
        let n = (max * 1.02 / step).ceil().max(1.0);
        let hi = n * step;
        let bold = (0..=n as u64).map(|i| i as f64 * step).collect();
        let light = (0..=(2 * n as u64))
            .map(|i| i as f64 * step / 2.0)
            .collect();
        Axis {
            lo: 0.0,
            hi,
            bold,
            light,
            log: false,
            fmt,
        }
    }

    /// A linear axis over `[lo, hi]` with round ticks that may be fractions (ratios).
    pub(crate) fn span(lo: f64, hi: f64, fmt: fn(f64) -> String) -> Axis {
        let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let step = nice_step((hi - lo) / 8.0);
        let lo = (lo / step).floor() * step;
        let hi = (hi / step).ceil() * step;
        let n = ((hi - lo) / step).round() as u64;
        Axis {
            lo,
            hi,
            bold: (0..=n).map(|i| lo + i as f64 * step).collect(),
            light: (0..=2 * n).map(|i| lo + i as f64 * step / 2.0).collect(),
            log: false,
            fmt,
        }
    }

    /// A linear axis from 0 to exactly `max` (a time axis ends where the run ends), with
    /// round ticks up to it.
    pub(crate) fn linear_exact(max: f64, fmt: fn(f64) -> String) -> Axis {
        let mut a = Axis::linear(max, fmt);
        if max.is_finite() && max > 0.0 {
            a.hi = max;
            a.bold.retain(|v| *v <= max);
            a.light.retain(|v| *v <= max);
        }
        a
    }

    /// A base-10 logarithmic axis covering `[min, max]` in whole decades; `min` is at
    /// least 1. Ticks at every decade, light lines at 2× and 5×.
    pub(crate) fn log(min: f64, max: f64, fmt: fn(f64) -> String) -> Axis {
        let min = if min.is_finite() && min >= 1.0 {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min * 10.0
        };
        let lo = min.log10().floor();
        let mut hi = max.log10().ceil();
        if hi <= lo {
            hi = lo + 1.0;
        }
        let decades = (lo as i64)..=(hi as i64);
        // Few decades leave few labels: then label the 2× and 5× lines as well.
        let bold = if hi - lo <= 2.0 {
            decades
                .clone()
                .flat_map(|d| [1.0, 2.0, 5.0].map(move |k| d as f64 + f64::log10(k)))
                .filter(|v| *v <= hi)
                .collect()
        } else {
            decades.clone().map(|d| d as f64).collect()
        };
        let light = decades
            .flat_map(|d| [1.0, 2.0, 5.0].map(move |k| d as f64 + f64::log10(k)))
            .filter(|v| *v <= hi)
            .collect();
        Axis {
            lo,
            hi,
            bold,
            light,
            log: true,
            fmt,
        }
    }

    /// A logarithmic axis of "one in N" ranks for percentile distributions: position
    /// `log10(1 / (1 - q))`, labelled `0%`, `90%`, `99%`, `99.9%`, … up to `decades`.
    pub(crate) fn percentile(decades: u32) -> Axis {
        let hi = f64::from(decades.max(1));
        Axis {
            lo: 0.0,
            hi,
            bold: (0..=decades.max(1)).map(f64::from).collect(),
            light: (0..decades.max(1))
                .flat_map(|d| [0.0, 2f64.log10(), 5f64.log10()].map(move |k| f64::from(d) + k))
                .collect(),
            log: false,
            fmt: fmt_percentile_rank,
        }
    }

    /// The same axis with another tick-label format.
    pub(crate) fn with_fmt(mut self, fmt: fn(f64) -> String) -> Axis {
        self.fmt = fmt;
        self
    }

    /// Where `v` (in data units) is plotted, or `None` if it cannot be (log of ≤ 0 is
    /// clamped to the bottom of the axis).
    pub(crate) fn place(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        if self.log {
            Some(v.max(10f64.powf(self.lo)).log10())
        } else {
            Some(v)
        }
    }

    fn label(&self, plotted: f64) -> String {
        if self.log {
            (self.fmt)(10f64.powf(plotted))
        } else {
            (self.fmt)(plotted)
        }
    }

    /// The same range without ticks, for the secondary x axis, which would otherwise
    /// repeat the time labels above the plot.
    fn coord_without_ticks(&self) -> AxisCoord {
        AxisCoord {
            lo: self.lo,
            hi: self.hi,
            bold: Vec::new(),
            light: Vec::new(),
        }
    }

    fn coord(&self) -> AxisCoord {
        AxisCoord {
            lo: self.lo,
            hi: self.hi,
            bold: self.bold.clone(),
            light: self.light.clone(),
        }
    }
}

/// A linear plotters coordinate whose grid lines are exactly the ticks chosen by
/// [`Axis`] (plotters' own `f64` range picks its own, and its key-point wrapper loses
/// the label formatter).
struct AxisCoord {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 || !v.is_finite() {
            return limit.0;
        }
        let frac = (v - self.lo) / span;
        limit.0 + (f64::from(limit.1 - limit.0) * frac).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// The smallest of 1, 2, 5 × 10^k that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = if raw > 0.0 && raw.is_finite() {
        raw
    } else {
        1.0
    };
    let mag = 10f64.powf(raw.log10().floor());
    for k in [1.0, 2.0, 5.0, 10.0] {
        if k * mag >= raw * (1.0 - 1e-9) {
            return k * mag;
        }
    }
    10.0 * mag
}

/// A series drawn as a line; `None` values leave a gap.
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) color: RGBColor,
    pub(crate) width: u32,
    pub(crate) dashed: bool,
    /// Drawn against the secondary (right-hand) axis.
    pub(crate) secondary: bool,
    pub(crate) points: Vec<(f64, Option<f64>)>,
}

impl Line {
    pub(crate) fn new(name: impl Into<String>, color: RGBColor) -> Line {
        Line {
            name: name.into(),
            color,
            width: 2,
            dashed: false,
            secondary: false,
            points: Vec::new(),
        }
    }
}

/// A series drawn as separate markers.
pub(crate) struct Dots {
    pub(crate) name: String,
    pub(crate) color: RGBColor,
    /// Crosses instead of filled circles.
    pub(crate) cross: bool,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A shaded time window, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Band {
    pub(crate) start_s: f64,
    /// `None`: lasts to the right edge of the chart.
    pub(crate) end_s: Option<f64>,
    pub(crate) label: String,
}

/// Everything one chart shows.
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_desc: String,
    pub(crate) y_desc: String,
    pub(crate) x: Axis,
    pub(crate) y: Axis,
    /// A right-hand axis and its description.
    pub(crate) y2: Option<(Axis, String)>,
    pub(crate) bands: Vec<Band>,
    pub(crate) lines: Vec<Line>,
    pub(crate) dots: Vec<Dots>,
    /// Shown in the middle when there is nothing to plot.
    pub(crate) empty_note: Option<String>,
}

/// The chart as one `<svg>` element. Drawing into a string cannot fail on I/O; should
/// plotters report an error anyway, the result is still one `<svg>` that names it.
pub(crate) fn render(chart: &Chart) -> String {
    let mut svg = String::new();
    match draw(chart, &mut svg) {
        Ok(()) => svg,
        Err(e) => error_svg(&chart.title, &e),
    }
}

fn error_svg(title: &str, err: &str) -> String {
    format!(
        "<svg width=\"{WIDTH}\" height=\"60\" viewBox=\"0 0 {WIDTH} 60\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"30\">{}: chart could not be drawn: {}</text></svg>",
        crate::markup::escape(title),
        crate::markup::escape(err)
    )
}

fn err<E: Display>(e: E) -> String {
    e.to_string()
}

fn draw(c: &Chart, svg: &mut String) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (y2_axis, y2_desc) = match &c.y2 {
        Some((a, d)) => (a.clone(), Some(d.as_str())),
        None => (Axis::linear(1.0, |v| format!("{v}")), None),
    };
    let right_area: u32 = if y2_desc.is_some() { 70 } else { 12 };
    let plot_width = WIDTH as i32 - 2 * 12 - 78 - right_area as i32;
    let (legend_at, legend_rows) = legend_layout(
        c.lines
            .iter()
            .map(|l| l.name.as_str())
            .chain(c.dots.iter().map(|d| d.name.as_str())),
        plot_width,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(&c.title, ("sans-serif", 20).into_font().color(&BLACK))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(78)
        .set_label_area_size(LabelAreaPosition::Top, 8 + 18 * legend_rows)
        .right_y_label_area_size(right_area)
        .build_cartesian_2d(c.x.coord(), c.y.coord())
        .map_err(err)?
        .set_secondary_coord(c.x.coord_without_ticks(), y2_axis.coord());

    let x_fmt = |v: &f64| c.x.label(*v);
    let y_fmt = |v: &f64| c.y.label(*v);
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", 13).into_font().color(&BLACK))
        .axis_desc_style(("sans-serif", 14).into_font().color(&BLACK))
        .bold_line_style(GRID.mix(0.9))
        .light_line_style(GRID.mix(0.35))
        .draw()
        .map_err(err)?;
    if let Some(desc) = y2_desc {
        let y2_fmt = |v: &f64| y2_axis.label(*v);
        chart
            .configure_secondary_axes()
            .y_desc(desc)
            .y_label_formatter(&y2_fmt)
            .label_style(("sans-serif", 13).into_font().color(&RED_C))
            .axis_desc_style(("sans-serif", 14).into_font().color(&RED_C))
            .draw()
            .map_err(err)?;
    }

    // Fault windows under the data.
    for b in &c.bands {
        let x0 = b.start_s.clamp(c.x.lo, c.x.hi);
        let x1 = b.end_s.unwrap_or(c.x.hi).clamp(c.x.lo, c.x.hi);
        // Make an instantaneous fault at least visible as a thin band.
        let x1 = if x1 - x0 < (c.x.hi - c.x.lo) / 400.0 {
            (x0 + (c.x.hi - c.x.lo) / 400.0).min(c.x.hi)
        } else {
            x1
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, c.y.lo), (x1, c.y.hi)],
                BAND_FILL.mix(0.16).filled(),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, c.y.lo), (x0, c.y.hi)],
                BAND_FILL.mix(0.6).stroke_width(1),
            )))
            .map_err(err)?;
    }

    for line in &c.lines {
        let style = line.color.stroke_width(line.width);
        let axis = if line.secondary { &y2_axis } else { &c.y };
        for run in runs(line, axis) {
            if run.len() == 1 {
                let dot = std::iter::once(Circle::new(run[0], 3, line.color.filled()));
                if line.secondary {
                    chart.draw_secondary_series(dot).map_err(err)?;
                } else {
                    chart.draw_series(dot).map_err(err)?;
                }
            } else if line.dashed {
                let series = DashedLineSeries::new(run, 6, 4, style);
                if line.secondary {
                    chart.draw_secondary_series(series).map_err(err)?;
                } else {
                    chart.draw_series(series).map_err(err)?;
                }
            } else if line.secondary {
                chart
                    .draw_secondary_series(LineSeries::new(run, style))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(run, style))
                    .map_err(err)?;
            }
        }
    }

    for d in &c.dots {
        let color = d.color;
        let pts: Vec<(f64, f64)> = d
            .points
            .iter()
            .filter_map(|&(x, y)| Some((c.x.place(x)?, c.y.place(y)?)))
            .collect();
        if d.cross {
            chart
                .draw_series(pts.iter().map(|&p| Cross::new(p, 4, color.stroke_width(2))))
                .map_err(err)?;
        } else {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
    }

    // Fault labels on top of the data, each in the highest row where it does not run into
    // an earlier label.
    let (left_px, top_px) = chart.backend_coord(&(c.x.lo, c.y.hi));
    let (right_px, _) = chart.backend_coord(&(c.x.hi, c.y.hi));
    let mut rows: Vec<Vec<(i32, i32)>> = vec![Vec::new(); LABEL_ROWS];
    for (i, b) in c.bands.iter().enumerate() {
        let x0 = b.start_s.clamp(c.x.lo, c.x.hi);
        let (px, _) = chart.backend_coord(&(x0, c.y.hi));
        let text = if b.end_s.is_none() {
            format!("{} (not healed)", b.label)
        } else {
            b.label.clone()
        };
        // A label that would run past the right edge ends at the edge instead.
        let width = (text.chars().count() as f64 * 7.0).ceil() as i32;
        let (x, h, span) = if px + 4 + width > right_px {
            (right_px - 4, HPos::Right, (right_px - 4 - width, right_px))
        } else {
            (px + 4, HPos::Left, (px, px + 4 + width))
        };
        let free = rows.iter().position(|taken| {
            taken
                .iter()
                .all(|&(a, z)| span.1 + 6 <= a || z + 6 <= span.0)
        });
        let row = free.unwrap_or(i % LABEL_ROWS);
        rows[row].push(span);
        root.draw(&Text::new(
            text,
            (x, top_px + 4 + 16 * i32::try_from(row).unwrap_or(0)),
            ("sans-serif", 13)
                .into_font()
                .color(&BAND_TEXT)
                .pos(Pos::new(h, VPos::Top)),
        ))
        .map_err(err)?;
    }

    if let Some(note) = &c.empty_note {
        let mid_x = chart.backend_coord(&((c.x.lo + c.x.hi) / 2.0, c.y.lo)).0;
        let mid_y = chart.backend_coord(&(c.x.lo, (c.y.lo + c.y.hi) / 2.0)).1;
        root.draw(&Text::new(
            note.clone(),
            (mid_x, mid_y),
            ("sans-serif", 18)
                .into_font()
                .color(&BAND_TEXT)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(err)?;
    }

    // The legend, between the title and the plot so that it never hides data or fault
    // labels, wrapped into as many rows as `legend_layout` planned.
    let font = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let row_y = |row: usize| top_px - 18 * (legend_rows - row as i32) + 4;
    let mut at = legend_at.iter();
    for line in &c.lines {
        let Some(&(row, dx)) = at.next() else { break };
        let (x, y) = (left_px + dx, row_y(row));
        let style = line.color.stroke_width(line.width + 1);
        if line.dashed {
            root.draw(&PathElement::new(vec![(x, y), (x + 9, y)], style))
                .map_err(err)?;
            root.draw(&PathElement::new(vec![(x + 14, y), (x + 22, y)], style))
                .map_err(err)?;
        } else {
            root.draw(&PathElement::new(vec![(x, y), (x + 22, y)], style))
                .map_err(err)?;
        }
        root.draw(&Text::new(line.name.clone(), (x + 28, y), font.clone()))
            .map_err(err)?;
    }
    for d in &c.dots {
        let Some(&(row, dx)) = at.next() else { break };
        let (x, y) = (left_px + dx, row_y(row));
        if d.cross {
            root.draw(&Cross::new((x + 11, y), 4, d.color.stroke_width(2)))
                .map_err(err)?;
        } else {
            root.draw(&Circle::new((x + 11, y), 4, d.color.filled()))
                .map_err(err)?;
        }
        root.draw(&Text::new(d.name.clone(), (x + 28, y), font.clone()))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Pixel width of a legend entry: sample, gap, text (estimated generously at 7.5 px a
/// character, as the browser lays the text out), space before the next entry.
fn legend_entry_width(name: &str) -> i32 {
    28 + (name.chars().count() as f64 * 7.5).ceil() as i32 + 18
}

/// Places legend entries left to right, wrapping when a row is full: returns each
/// entry's (row, x offset from the left of the plot) and the number of rows.
fn legend_layout<'n>(names: impl Iterator<Item = &'n str>, avail: i32) -> (Vec<(usize, i32)>, i32) {
    let mut out = Vec::new();
    let (mut row, mut x) = (0usize, 0i32);
    for name in names {
        let w = legend_entry_width(name);
        if x > 0 && x + w - 18 > avail {
            row += 1;
            x = 0;
        }
        out.push((row, x));
        x += w;
    }
    let rows = if out.is_empty() { 1 } else { row as i32 + 1 };
    (out, rows)
}

/// The contiguous runs of present values of `line`, placed on `y`.
fn runs(line: &Line, y: &Axis) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for &(x, v) in &line.points {
        match v.and_then(|v| y.place(v)) {
            Some(py) if x.is_finite() => cur.push((x, py)),
            _ => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Tick labels for µs values: `1µs`, `250µs`, `1.5ms`, `2s`.
pub(crate) fn fmt_axis_us(v: f64) -> String {
    if v < 1_000.0 {
        format!("{}µs", trim(v))
    } else if v < 1_000_000.0 {
        format!("{}ms", trim(v / 1_000.0))
    } else {
        format!("{}s", trim(v / 1_000_000.0))
    }
}

/// Tick labels for ms values: `250ms`, `1.5s`.
pub(crate) fn fmt_axis_ms(v: f64) -> String {
    if v < 1_000.0 {
        format!("{}ms", trim(v))
    } else {
        format!("{}s", trim(v / 1_000.0))
    }
}

/// Tick labels for counts: `0`, `250`, `1.5k`, `2M`.
pub(crate) fn fmt_axis_count(v: f64) -> String {
    if v.abs() < 1_000.0 {
        trim(v)
    } else if v.abs() < 1_000_000.0 {
        format!("{}k", trim(v / 1_000.0))
    } else {
        format!("{}M", trim(v / 1_000_000.0))
    }
}

/// Tick labels for ratios: up to 4 decimals (`0.999`).
pub(crate) fn fmt_axis_ratio(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Tick labels for seconds on a time axis.
pub(crate) fn fmt_axis_s(v: f64) -> String {
    trim(v)
}

/// Up to 2 decimals, without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// The label of a percentile-rank tick at position `log10(1 / (1 - q))`.
fn fmt_percentile_rank(pos: f64) -> String {
    let one_in = 10f64.powf(pos);
    let pct = 100.0 * (1.0 - 1.0 / one_in);
    // Enough decimals to tell 99.9 from 99.99: one per decade past the second.
    let decimals = ((pos - 1e-9).ceil() as i64 - 2).max(0) as usize;
    format!("{pct:.decimals$}%")
}

/// Points of a percentile-distribution line for a histogram: x at
/// `log10(1 / (1 - q))`, the 100 % point at the right edge of `x`.
pub(crate) fn percentile_points(
    h: &hdrhistogram::Histogram<u64>,
    x: &Axis,
) -> Vec<(f64, Option<f64>)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts = Vec::new();
    for step in h.iter_quantiles(crate::hgrm::TICKS_PER_HALF_DISTANCE) {
        let q = step.quantile_iterated_to();
        let pos = if q < 1.0 {
            (1.0 / (1.0 - q)).log10().min(x.hi)
        } else {
            x.hi
        };
        pts.push((pos, Some(step.value_iterated_to() as f64)));
    }
    pts
}

/// Decades of percentile rank worth showing for `count` values: up to 1 in `count`,
/// at least 2 (99 %) and at most 6 (99.9999 %).
pub(crate) fn percentile_decades(count: u64) -> u32 {
    let d = (count.max(1) as f64).log10().ceil() as u32;
    d.clamp(2, 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.1), 2.0);
        assert_eq!(nice_step(24.0), 50.0);
        assert_eq!(nice_step(600.0), 1000.0);
    }

    #[test]
    fn linear_axis_covers_max_with_round_ticks() {
        let a = Axis::linear(437.0, fmt_axis_count);
        assert_eq!(a.hi, 500.0);
        assert_eq!(a.bold, vec![0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        let a = Axis::linear(123.0, fmt_axis_s);
        assert_eq!((a.hi, a.bold.len()), (140.0, 8));
        let a = Axis::linear_exact(123.0, fmt_axis_s);
        assert_eq!(a.hi, 123.0);
        assert_eq!(a.bold.last(), Some(&120.0));
        let a = Axis::linear(0.0, fmt_axis_count);
        assert_eq!(a.hi, 2.0);
        assert_eq!(a.bold, vec![0.0, 1.0, 2.0]);
        let a = Axis::linear(300.0, fmt_axis_count);
        assert_eq!(a.hi, 350.0);
    }

    #[test]
    fn log_axis_in_decades() {
        let a = Axis::log(80.0, 25_000.0, fmt_axis_us);
        assert_eq!((a.lo, a.hi), (1.0, 5.0));
        assert_eq!(a.bold, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(a.label(3.0), "1ms");
        assert_eq!(a.place(0.0), Some(1.0));
        assert_eq!(a.place(1000.0), Some(3.0));
    }

    #[test]
    fn tick_labels() {
        assert_eq!(fmt_percentile_rank(0.0), "0%");
        assert_eq!(fmt_percentile_rank(1.0), "90%");
        assert_eq!(fmt_percentile_rank(2.0), "99%");
        assert_eq!(fmt_percentile_rank(3.0), "99.9%");
        assert_eq!(fmt_percentile_rank(4.0), "99.99%");
        assert_eq!(fmt_percentile_rank(2f64.log10()), "50%");
        assert_eq!(fmt_axis_us(1.0), "1µs");
        assert_eq!(fmt_axis_us(1_500.0), "1.5ms");
        assert_eq!(fmt_axis_us(2_000_000.0), "2s");
        assert_eq!(fmt_axis_ms(1_500.0), "1.5s");
        assert_eq!(fmt_axis_count(2_500.0), "2.5k");
        assert_eq!(fmt_axis_count(0.0), "0");
    }

    #[test]
    fn legend_wraps_into_rows() {
        let names = ["p50", "p99", "max"];
        let (at, rows) = legend_layout(names.iter().copied(), 800);
        assert_eq!(rows, 1);
        assert_eq!(at, vec![(0, 0), (0, 69), (0, 138)]);
        let many: Vec<String> = (1..=10).map(|i| format!("broker-{i}")).collect();
        let (at, rows) = legend_layout(many.iter().map(String::as_str), 800);
        assert_eq!(rows, 2);
        assert_eq!(at[0], (0, 0));
        assert!(
            at.iter()
                .all(|&(_, x)| x + legend_entry_width("broker-10") - 18 <= 800)
        );
        assert_eq!(legend_layout(std::iter::empty(), 800).1, 1);
    }

    #[test]
    fn gaps_split_lines() {
        let mut l = Line::new("x", BLUE_C);
        l.points = vec![
            (0.0, Some(1.0)),
            (1.0, None),
            (2.0, Some(2.0)),
            (3.0, Some(3.0)),
        ];
        let r = runs(&l, &Axis::linear(3.0, fmt_axis_count));
        assert_eq!(r, vec![vec![(0.0, 1.0)], vec![(2.0, 2.0), (3.0, 3.0)]]);
    }

    #[test]
    fn render_is_one_svg_with_labels() {
        let mut l = Line::new("p99", ORANGE_C);
        l.points = (0..10)
            .map(|i| (i as f64, Some(100.0 * i as f64)))
            .collect();
        let chart = Chart {
            title: "Latency <test>".into(),
            x_desc: "time (s)".into(),
            y_desc: "latency".into(),
            x: Axis::linear(10.0, fmt_axis_s),
            y: Axis::log(1.0, 1000.0, fmt_axis_us),
            y2: None,
            bands: vec![Band {
                start_s: 2.0,
                end_s: Some(4.0),
                label: "crash broker-2".into(),
            }],
            lines: vec![l],
            dots: vec![],
            empty_note: None,
        };
        let svg = render(&chart);
        assert_eq!(svg.matches("<svg").count(), 1, "{svg}");
        assert!(svg.contains("crash broker-2"));
        assert!(svg.contains("Latency &lt;test&gt;"));
        assert!(svg.contains(">\np99\n</text>") || svg.contains("p99"));
        assert_eq!(svg, render(&chart));
    }
}
