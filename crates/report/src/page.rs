//! The page kit every report is built from: escaping, number formatting, headings, figures,
//! the table of a fitted law with its cautions, and the style sheet.

use std::fmt::Write;

use scalelab_analysis::{Interval, LawFit};

use crate::ReportError;
use crate::plot::{Figure, render};

/// Opens a page titled `title` (escaped here) with the style sheet.
pub(crate) fn page_start(out: &mut String, title: &str) {
    let _ = writeln!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(title)
    );
}

/// The table of facts under a page's heading: a row a `(name, value)`, values already HTML.
pub(crate) fn summary_table(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table class=\"summary\">");
    for (name, value) in rows {
        let _ = write!(out, "<tr><td>{name}</td><td>{value}</td></tr>");
    }
    out.push_str("</table>\n");
}

/// One table row of cells, already HTML.
pub(crate) fn table_row<const N: usize>(out: &mut String, cells: [String; N]) {
    out.push_str("<tr>");
    for cell in cells {
        let _ = write!(out, "<td>{cell}</td>");
    }
    out.push_str("</tr>\n");
}

/// `s` escaped for HTML text and attributes.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An interval as `[lo, hi]`, or a dash.
pub(crate) fn interval_text(i: Option<Interval>) -> String {
    i.map_or("—".into(), |i| format!("[{}, {}]", sig(i.lo), sig(i.hi)))
}

/// Four significant digits.
pub(crate) fn sig(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = if a == 0.0 {
            0
        } else {
            (3 - a.log10().floor() as i32).max(0) as usize
        };
        format!("{v:.digits$}")
    }
}

/// A fitted law's constants with their intervals, the fit's diagnostics, and its cautions
/// (with `remedy`, what would pin it down) when the data do not constrain it.
pub(crate) fn constants_table(out: &mut String, fit: &LawFit, level: f64, remedy: &str) {
    let _ = writeln!(
        out,
        "<table><tr><th>constant</th><th>value</th><th>{:.0}% bootstrap interval</th></tr>",
        level * 100.0
    );
    for c in &fit.constants {
        table_row(out, [esc(&c.name), sig(c.value), interval_text(c.interval)]);
    }
    let _ = writeln!(
        out,
        "</table><p class=\"small\">{} points; Huber δ = {}; objective {:.3e}; gradient norm at the optimum {:.1e}; {} of the bootstrap replicates gave a fit; {} starting points.</p>",
        fit.points,
        fit.huber_delta,
        fit.objective,
        fit.gradient_norm,
        fit.bootstrap_used,
        fit.starts
    );
    if fit.get("E").is_some_and(|e| e < 1e-6) {
        let _ = writeln!(
            out,
            "<p class=\"small\">E is at its bound of zero: these points show no loss floor, so the law is a pure power law without an irreducible term.</p>"
        );
    }
    let cautions = fit.cautions();
    if !cautions.is_empty() {
        let _ = writeln!(
            out,
            "<div class=\"caution\"><b>Read with care: this fit is poorly constrained.</b><ul>"
        );
        for c in &cautions {
            let _ = writeln!(out, "<li>{}</li>", esc(c));
        }
        let _ = writeln!(out, "</ul>{}</div>", esc(remedy));
    }
}

/// A numbered section heading: sections a study has no data for are left out, so the
/// numbers are given as the page is written.
pub(crate) fn heading(out: &mut String, section: &mut usize, title: &str) {
    *section += 1;
    let _ = writeln!(out, "<h2>{section}. {title}</h2>");
}

/// A figure with its caption.
pub(crate) fn figure(out: &mut String, fig: &Figure, caption: &str) -> Result<(), ReportError> {
    let svg = render(fig, 760, 460)?;
    let _ = writeln!(
        out,
        "<figure>{svg}<figcaption>{caption}</figcaption></figure>"
    );
    Ok(())
}

/// The style sheet of every page.
pub(crate) const CSS: &str = "body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.summary td{text-align:left}figure{margin:1em 0}figcaption{font-size:.9em;color:#444}.small{font-size:.85em;color:#555}.note{background:#fff6e0;padding:.4em .8em;border-left:3px solid #e69f00}.caution{background:#fdecea;padding:.4em .8em;border-left:3px solid #d55e00;font-size:.9em}.lead{font-size:1.02em}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}code{font-size:.9em}";
