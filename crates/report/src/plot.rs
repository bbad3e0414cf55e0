//! One plotting routine for every figure of the report: series of lines, markers and shaded
//! bands on linear or logarithmic axes, rendered to an SVG string.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ReportError;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// A line through the points.
    Line,
    /// A dashed line (fits and predictions).
    Dashed,
    /// Markers only.
    Markers,
    /// A line with markers.
    LineMarkers,
}

/// One series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label (empty: not in the legend).
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Colour index into the palette.
    pub color: usize,
    /// How to draw it.
    pub style: Style,
}

/// A shaded band `(x, lo, hi)`.
#[derive(Debug, Clone)]
pub struct Band {
    /// Legend label.
    pub label: String,
    /// `(x, lo, hi)` rows.
    pub rows: Vec<(f64, f64, f64)>,
    /// Colour index.
    pub color: usize,
}

/// A figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Log-scaled x.
    pub x_log: bool,
    /// Log-scaled y.
    pub y_log: bool,
    /// Series.
    pub series: Vec<Series>,
    /// Bands, drawn beneath the series.
    pub bands: Vec<Band>,
}

/// Colour-blind-safe palette (Okabe & Ito 2008).
pub fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(120, 120, 120),
        RGBColor(0, 0, 0),
    ];
    P[i % P.len()]
}

fn bounds(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    Some(if log {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo / 2.0, hi * 2.0)
        };
        let pad = (hi / lo).powf(0.04);
        (lo / pad, hi * pad)
    } else {
        let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
        (lo - 0.05 * span, hi + 0.05 * span)
    })
}

/// Renders `fig` to an SVG string of `width × height` pixels.
pub fn render(fig: &Figure, width: u32, height: u32) -> Result<String, ReportError> {
    let err = |e: &dyn std::fmt::Display| ReportError::Plot {
        title: fig.title.clone(),
        message: e.to_string(),
    };
    let xs = fig
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(fig.bands.iter().flat_map(|b| b.rows.iter().map(|r| r.0)));
    let ys = fig
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(
            fig.bands
                .iter()
                .flat_map(|b| b.rows.iter().flat_map(|r| [r.1, r.2])),
        );
    let (Some(xr), Some(yr)) = (bounds(xs, fig.x_log), bounds(ys, fig.y_log)) else {
        return Err(err(&"no finite points to draw"));
    };
    let corner = legend_corner(fig, xr, yr);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        match (fig.x_log, fig.y_log) {
            (true, true) => draw(
                &root,
                fig,
                (xr.0..xr.1).log_scale(),
                (yr.0..yr.1).log_scale(),
                corner,
            ),
            (true, false) => draw(&root, fig, (xr.0..xr.1).log_scale(), yr.0..yr.1, corner),
            (false, true) => draw(&root, fig, xr.0..xr.1, (yr.0..yr.1).log_scale(), corner),
            (false, false) => draw(&root, fig, xr.0..xr.1, yr.0..yr.1, corner),
        }
        .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// Where the legend covers least: the corner (upper right, upper left, lower right, lower
/// left, in that order of preference) whose box of 40% × 35% of the plot holds the fewest
/// points of the drawn lines (each segment sampled at eight points) and bands.
fn legend_corner(fig: &Figure, xr: (f64, f64), yr: (f64, f64)) -> SeriesLabelPosition {
    let unit = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    let mut points: Vec<(f64, f64)> = Vec::new();
    for s in &fig.series {
        for w in s.points.windows(2) {
            for k in 0..8 {
                let t = f64::from(k) / 8.0;
                points.push((
                    w[0].0 + t * (w[1].0 - w[0].0),
                    w[0].1 + t * (w[1].1 - w[0].1),
                ));
            }
        }
        points.extend(s.points.last().copied());
    }
    for b in &fig.bands {
        points.extend(b.rows.iter().flat_map(|r| [(r.0, r.1), (r.0, r.2)]));
    }
    let normalised: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .map(|&(x, y)| (unit(x, xr, fig.x_log), unit(y, yr, fig.y_log)))
        .collect();
    let count = |right: bool, upper: bool| {
        normalised
            .iter()
            .filter(|&&(x, y)| {
                (if right { x >= 0.6 } else { x <= 0.4 })
                    && (if upper { y >= 0.65 } else { y <= 0.35 })
            })
            .count()
    };
    [
        (count(true, true), SeriesLabelPosition::UpperRight),
        (count(false, true), SeriesLabelPosition::UpperLeft),
        (count(true, false), SeriesLabelPosition::LowerRight),
        (count(false, false), SeriesLabelPosition::LowerLeft),
    ]
    .into_iter()
    .min_by_key(|(n, _)| *n)
    .map_or(SeriesLabelPosition::UpperRight, |(_, p)| p)
}

fn draw<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    fig: &Figure,
    x: X,
    y: Y,
    corner: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(&fig.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(fig.x_label.as_str())
        .y_desc(fig.y_label.as_str())
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let mut legend = false;
    for band in &fig.bands {
        let c = color(band.color);
        let mut poly: Vec<(f64, f64)> = band.rows.iter().map(|r| (r.0, r.2)).collect();
        poly.extend(band.rows.iter().rev().map(|r| (r.0, r.1)));
        let drawn = chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18))))?;
        if !band.label.is_empty() {
            legend = true;
            drawn.label(band.label.as_str()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], c.mix(0.3).filled())
            });
        }
    }
    for s in &fig.series {
        let c = color(s.color);
        let pts = s.points.clone();
        let labelled = match s.style {
            Style::Line | Style::LineMarkers => {
                if s.style == Style::LineMarkers {
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
                }
                chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            }
            Style::Dashed => {
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, c.stroke_width(2)))?
            }
            Style::Markers => {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?
            }
        };
        if !s.label.is_empty() {
            legend = true;
            labelled.label(s.label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
            });
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(corner)
            .draw()?;
    }
    Ok(())
}

/// `12000` → `1.2e4`; plain numbers between 0.01 and 1000.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.1e}");
        s.replace(".0e", "e")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_the_lines_are_not() {
        let fig = |points: Vec<(f64, f64)>| Figure {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            x_log: false,
            y_log: false,
            series: vec![Series {
                label: "s".into(),
                points,
                color: 0,
                style: Style::Line,
            }],
            bands: vec![],
        };
        let at = |f: &Figure| {
            let xs = f.series[0].points.iter().map(|p| p.0);
            let ys = f.series[0].points.iter().map(|p| p.1);
            legend_corner(f, bounds(xs, false).unwrap(), bounds(ys, false).unwrap())
        };
        // A falling loss curve fills the upper left and lower right: the legend goes upper right.
        let falling = fig(vec![(0.0, 1.0), (0.2, 0.4), (1.0, 0.0)]);
        assert!(matches!(at(&falling), SeriesLabelPosition::UpperRight));
        // A rising accuracy curve that saturates at the top right: not there.
        let rising = fig(vec![(0.0, 0.0), (0.5, 0.9), (1.0, 1.0)]);
        assert!(matches!(at(&rising), SeriesLabelPosition::LowerRight));
    }

    #[test]
    fn a_figure_renders_to_svg_with_its_labels() {
        let fig = Figure {
            title: "loss against N".into(),
            x_label: "N".into(),
            y_label: "loss".into(),
            x_log: true,
            y_log: false,
            series: vec![Series {
                label: "runs".into(),
                points: vec![(1e5, 3.0), (1e6, 2.5), (1e7, 2.2)],
                color: 0,
                style: Style::Markers,
            }],
            bands: vec![Band {
                label: "95% band".into(),
                rows: vec![(1e5, 2.9, 3.1), (1e7, 2.1, 2.3)],
                color: 1,
            }],
        };
        let svg = render(&fig, 600, 400).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("loss against N") && svg.contains("95% band"));
        assert!(svg.matches("<circle").count() >= 3);
        let empty = Figure {
            series: vec![],
            bands: vec![],
            ..fig
        };
        assert!(render(&empty, 600, 400).is_err());
    }

    #[test]
    fn numbers_print_short() {
        assert_eq!(short(12000.0), "1.2e4");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(0.0), "0");
    }
}
