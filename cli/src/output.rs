//! Output: readable tables for people, one JSON object per line for programs.

use std::io::Write;

use crate::error::CliError;

/// A table of rows under a header, printed with aligned columns.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, each column as wide as its widest cell.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                if i + 1 == widths.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = line(&mut self.header.iter().map(String::as_str));
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }

    pub(crate) fn print(&self) -> Result<(), CliError> {
        print(&self.render())
    }
}

/// Writes to standard output; a closed pipe (`factum events query | head`) ends quietly.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::Io { what: "writing to standard output".into(), source: e }),
        Ok(()) => Ok(()),
    }
}

/// One JSON value on a line of its own.
pub(crate) fn json_line(value: &serde_json::Value) -> Result<(), CliError> {
    print(&format!("{value}\n"))
}

/// A duration in seconds, short: `0.4s`, `12s`, `3m05s`, `2h10m`.
pub(crate) fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1}s")
    } else if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_end_without_padding() {
        let mut t = Table::new(&["NAME", "LAG"]);
        t.row(vec!["order_summary".into(), "0".into()]);
        t.row(vec!["x".into(), "12345".into()]);
        assert_eq!(t.render(), "NAME           LAG\norder_summary  0\nx              12345\n");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(seconds(0.42), "0.4s");
        assert_eq!(seconds(42.0), "42s");
        assert_eq!(seconds(185.0), "3m05s");
        assert_eq!(seconds(7800.0), "2h10m");
    }
}
