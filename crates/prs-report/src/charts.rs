//! The report's charts: inline SVG drawn by plotters (its SVG backend leaves text to the
//! browser, so no font files are needed).

use plotters::prelude::*;

/// One line (or cloud of points) of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (760, 380);

/// Colour-blind-friendly colours (Okabe–Ito), one per series, in order.
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

fn draw_error(e: impl std::fmt::Display) -> String {
    format!("drawing a chart failed: {e}")
}

/// The (x, y) ranges covering every point, padded; `None` without a finite point.
fn ranges(series: &[Series], y_from_zero: bool) -> Option<((f64, f64), (f64, f64))> {
    let points = series
        .iter()
        .flat_map(|s| &s.points)
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    let mut any = false;
    for &(x, y) in points {
        any = true;
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if !any {
        return None;
    }
    if y_from_zero {
        y0 = y0.min(0.0);
    }
    let pad = |a: f64, b: f64| {
        let d = if b > a { (b - a) * 0.05 } else { 1.0 };
        (a - d, b + d)
    };
    Some((pad(x0, x1), pad(y0, y1)))
}

/// Lines through each series' points, and vertical marks `(series index, x)` (medians, say).
/// `None` when there is nothing to draw.
pub fn lines(
    title: &str,
    axes: (&str, &str),
    series: &[Series],
    marks: &[(usize, f64)],
) -> Result<Option<String>, String> {
    draw(title, axes, series, false, |chart, y| {
        for (i, s) in series.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))
                .map_err(draw_error)?
                .label(s.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        for &(i, at) in marks {
            let mark = PathElement::new(vec![(at, y.0), (at, y.1)], colour(i).stroke_width(1));
            chart
                .draw_series(std::iter::once(mark))
                .map_err(draw_error)?;
        }
        Ok(())
    })
}

/// Each series' points as dots.
pub fn dots(title: &str, axes: (&str, &str), series: &[Series]) -> Result<Option<String>, String> {
    draw(title, axes, series, false, |chart, _| {
        for (i, s) in series.iter().enumerate() {
            let c = colour(i);
            let dots = s
                .points
                .iter()
                .map(move |&p| Circle::new(p, 2, c.mix(0.6).filled()));
            chart
                .draw_series(dots)
                .map_err(draw_error)?
                .label(s.label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, c.filled()));
        }
        Ok(())
    })
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart frame with axes and a legend, `body` drawing into it.
fn draw(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series],
    y_from_zero: bool,
    body: impl FnOnce(&mut Chart<'_, '_>, (f64, f64)) -> Result<(), String>,
) -> Result<Option<String>, String> {
    let Some((x, y)) = ranges(series, y_from_zero) else {
        return Ok(None);
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(draw_error)?;
        body(&mut chart, y)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(Some(svg))
}

/// Each group's values as a frequency polygon over shared bins (share of the group per bin),
/// with the group's median as a mark.
pub fn distribution(
    groups: &[(String, Vec<f64>)],
    bins: usize,
) -> (Vec<Series>, Vec<(usize, f64)>) {
    let all = groups.iter().flat_map(|(_, v)| v).filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if lo > hi {
        return (Vec::new(), Vec::new());
    }
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let mut series = Vec::new();
    let mut marks = Vec::new();
    for (i, (label, values)) in groups.iter().enumerate() {
        let mut counts = vec![0usize; bins];
        for v in values.iter().filter(|v| v.is_finite()) {
            let b = (((v - lo) / width) as usize).min(bins - 1);
            counts[b] += 1;
        }
        let n = values.len().max(1) as f64;
        let points = (0..bins)
            .map(|b| (lo + (b as f64 + 0.5) * width, counts[b] as f64 / n))
            .collect();
        series.push(Series {
            label: format!("{label} (n = {})", values.len()),
            points,
        });
        marks.push((i, super::stats::median(values)));
    }
    (series, marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_svg_with_its_labels_and_nothing_to_draw_is_none() {
        let s = vec![Series {
            label: "prs".into(),
            points: vec![(1.0, 2.0), (2.0, 3.0)],
        }];
        let svg = lines("Best of k", ("k", "reward"), &s, &[(0, 1.5)])
            .unwrap()
            .unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Best of k") && svg.contains("prs"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let empty = vec![Series {
            label: "x".into(),
            points: vec![],
        }];
        assert_eq!(lines("t", ("x", "y"), &empty, &[]).unwrap(), None);
        assert!(dots("t", ("x", "y"), &s)
            .unwrap()
            .unwrap()
            .contains("<circle"));
    }

    #[test]
    fn distributions_share_their_bins_and_mark_medians() {
        let groups = vec![
            ("a".to_string(), vec![0.0, 0.0, 1.0]),
            ("b".to_string(), vec![1.0]),
        ];
        let (series, marks) = distribution(&groups, 2);
        assert_eq!(series[0].points.len(), 2);
        assert!((series[0].points[0].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(series[1].points[1].1, 1.0);
        assert_eq!(marks, vec![(0, 0.0), (1, 1.0)]);
    }
}
