//! The table: one row per figure, one column per target, then Strata/peer ratios.

use std::fmt::Write as _;

use crate::target::Kind;

/// A figure, or why there is none ("n/a (endpoint missing)", "skipped (time limit)", ...).
pub type Fig = Result<f64, String>;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub name: String,
    /// Its unit.
    pub unit: &'static str,
    /// One cell per target, in [`Report::targets`] order.
    pub cells: Vec<Fig>,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Column order.
    pub targets: Vec<Kind>,
    /// Sections, each a title and its rows.
    pub sections: Vec<(String, Vec<Row>)>,
    /// Free-text lines printed under the table (rejections, what was forced, ...).
    pub notes: Vec<String>,
}

/// Formats a figure with about three significant digits.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".to_owned()
    } else {
        format!("{v:.3}")
    }
}

fn cell(f: &Fig) -> String {
    match f {
        Ok(v) => format_number(*v),
        Err(why) => why.clone(),
    }
}

impl Report {
    /// The Strata/peer ratio columns: (Strata's column, peer's column, peer).
    fn ratio_columns(&self) -> Vec<(usize, usize, Kind)> {
        let Some(s) = self.targets.iter().position(|k| *k == Kind::Strata) else {
            return Vec::new();
        };
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, k)| **k != Kind::Strata)
            .map(|(i, k)| (s, i, *k))
            .collect()
    }

    /// The report as a Markdown table plus notes.
    pub fn markdown(&self) -> String {
        let ratios = self.ratio_columns();
        let mut out = String::new();
        let mut header = "| figure | unit |".to_owned();
        let mut rule = "|---|---|".to_owned();
        for k in &self.targets {
            let _ = write!(header, " {k} |");
            rule.push_str("---:|");
        }
        for (_, _, peer) in &ratios {
            let _ = write!(header, " strata/{peer} |");
            rule.push_str("---:|");
        }
        for (title, rows) in &self.sections {
            let _ = writeln!(out, "\n**{title}**\n\n{header}\n{rule}");
            for row in rows {
                let _ = write!(out, "| {} | {} |", row.name, row.unit);
                for c in &row.cells {
                    let _ = write!(out, " {} |", cell(c));
                }
                for (s, p, _) in &ratios {
                    let ratio = match (&row.cells[*s], &row.cells[*p]) {
                        (Ok(a), Ok(b)) if *b != 0.0 => format!("{:.2}", a / b),
                        _ => "n/a".to_owned(),
                    };
                    let _ = write!(out, " {ratio} |");
                }
                out.push('\n');
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_only_where_both_have_figures() {
        let report = Report {
            targets: vec![Kind::Strata, Kind::VictoriaMetrics, Kind::Prometheus],
            sections: vec![(
                "ingest".to_owned(),
                vec![Row {
                    name: "rate".to_owned(),
                    unit: "samples/s",
                    cells: vec![Ok(50.0), Ok(100.0), Err("n/a (endpoint missing)".to_owned())],
                }],
            )],
            notes: vec![],
        };
        let md = report.markdown();
        assert!(md.contains("| strata/victoriametrics | strata/prometheus |"), "{md}");
        assert!(
            md.contains("| rate | samples/s | 50 | 100 | n/a (endpoint missing) | 0.50 | n/a |"),
            "{md}"
        );
        assert_eq!(format_number(1_234_567.4), "1234567");
        assert_eq!(format_number(0.01234), "0.012");
    }
}
