//! CSV records read in place from a file's text: each field is a slice of the text, copied only
//! when unquoting changes it (a doubled `""` inside quotes). A million-row `ShapedDevices.csv`
//! is read without a heap allocation per field, and every record knows its 1-based line.
//!
//! The dialect is the one spreadsheets write and LibreQoS reads:
//! - fields are separated by `,`, records end at `\n`, `\r\n` or a lone `\r`;
//! - a field whose first character is `"` is quoted: it runs to the next `"` that is not
//!   doubled, may hold commas and line ends, and `""` inside it stands for one `"`. Text after
//!   the closing quote, up to the next comma, is kept as written (as Python's `csv` does);
//! - a `"` anywhere else is an ordinary character;
//! - a line whose first character is `#` is a comment;
//! - fields are trimmed of surrounding white space, after unquoting.

use std::borrow::Cow;

/// Reads records one at a time.
pub struct Records<'a> {
    text: &'a str,
    /// Byte offset of the next record.
    at: usize,
    /// 1-based line of `at`.
    line: usize,
}

/// Why the text is not CSV: a quoted field that never ends.
#[derive(Debug, PartialEq, Eq)]
pub struct Unclosed {
    /// The line where the field's quote opens.
    pub line: usize,
}

impl<'a> Records<'a> {
    pub fn new(text: &'a str) -> Records<'a> {
        Records {
            text,
            at: 0,
            line: 1,
        }
    }

    /// The next record's fields into `fields` (cleared first) and its line; `None` at the end
    /// of the text. Comment lines are skipped; blank lines are records of one empty field.
    pub fn next_into(&mut self, fields: &mut Vec<Cow<'a, str>>) -> Option<Result<usize, Unclosed>> {
        fields.clear();
        let bytes = self.text.as_bytes();
        while bytes.get(self.at) == Some(&b'#') {
            match memchr(b'\n', &bytes[self.at..]) {
                Some(i) => {
                    self.at += i + 1;
                    self.line += 1;
                }
                None => self.at = bytes.len(),
            }
        }
        if self.at >= bytes.len() {
            return None;
        }
        let line = self.line;
        loop {
            let field = match bytes.get(self.at) {
                Some(b'"') => match self.quoted() {
                    Some(f) => f,
                    None => {
                        self.at = bytes.len();
                        return Some(Err(Unclosed { line }));
                    }
                },
                _ => {
                    let start = self.at;
                    while let Some(&b) = bytes.get(self.at) {
                        if matches!(b, b',' | b'\n' | b'\r') {
                            break;
                        }
                        self.at += 1;
                    }
                    Cow::Borrowed(self.text[start..self.at].trim())
                }
            };
            fields.push(field);
            match bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'\r') => {
                    self.at += 1;
                    if bytes.get(self.at) == Some(&b'\n') {
                        self.at += 1;
                    }
                    self.line += 1;
                    return Some(Ok(line));
                }
                Some(_) => {
                    self.at += 1;
                    self.line += 1;
                    return Some(Ok(line));
                }
                None => return Some(Ok(line)),
            }
        }
    }

    /// A quoted field starting at `at`, which is left after it (at the comma, the line end or
    /// the end of the text); `None` if its quote never closes.
    fn quoted(&mut self) -> Option<Cow<'a, str>> {
        let bytes = self.text.as_bytes();
        let start = self.at + 1;
        let mut p = start;
        let mut owned: Option<String> = None;
        let mut piece = start;
        loop {
            let i = p + memchr(b'"', bytes.get(p..)?)?;
            self.line += bytes[p..i].iter().filter(|&&b| b == b'\n').count();
            if bytes.get(i + 1) == Some(&b'"') {
                // A doubled quote: keep what came before and one quote.
                owned
                    .get_or_insert_with(String::new)
                    .push_str(&self.text[piece..=i]);
                p = i + 2;
                piece = p;
                continue;
            }
            let inner = &self.text[piece..i];
            // Anything between the closing quote and the comma stays, as written.
            let mut end = i + 1;
            while let Some(&b) = bytes.get(end) {
                if matches!(b, b',' | b'\n' | b'\r') {
                    break;
                }
                end += 1;
            }
            let tail = &self.text[i + 1..end];
            self.at = end;
            return Some(match owned {
                None if tail.is_empty() => Cow::Borrowed(inner.trim()),
                None => Cow::Owned(format!("{inner}{tail}").trim().to_owned()),
                Some(mut s) => {
                    s.push_str(inner);
                    s.push_str(tail);
                    Cow::Owned(s.trim().to_owned())
                }
            });
        }
    }
}

/// Where `needle` first occurs in `haystack`.
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record as (line, fields), or the first error.
    fn read(text: &str) -> Result<Vec<(usize, Vec<String>)>, Unclosed> {
        let mut r = Records::new(text);
        let mut fields = Vec::new();
        let mut out = Vec::new();
        while let Some(line) = r.next_into(&mut fields) {
            out.push((line?, fields.iter().map(|f| f.to_string()).collect()));
        }
        Ok(out)
    }

    fn rec(line: usize, fields: &[&str]) -> (usize, Vec<String>) {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn fields_are_trimmed_slices_and_lines_are_counted() {
        assert_eq!(
            read("a, b ,c\n\n 1,2,3 \r\nx\ry").unwrap(),
            vec![
                rec(1, &["a", "b", "c"]),
                rec(2, &[""]),
                rec(3, &["1", "2", "3"]),
                rec(4, &["x"]),
                rec(5, &["y"]),
            ]
        );
        assert_eq!(read("").unwrap(), vec![]);
        assert_eq!(read("a,\n").unwrap(), vec![rec(1, &["a", ""])]);
    }

    #[test]
    fn unquoted_fields_are_borrowed_and_doubled_quotes_are_copied() {
        let mut r = Records::new("plain,\"quoted, with comma\",\"say \"\"hi\"\"\"\n");
        let mut f = Vec::new();
        assert_eq!(r.next_into(&mut f), Some(Ok(1)));
        assert!(matches!(f[0], Cow::Borrowed("plain")));
        assert!(matches!(f[1], Cow::Borrowed("quoted, with comma")));
        assert_eq!(f[2], "say \"hi\"");
        assert!(matches!(f[2], Cow::Owned(_)));
        assert_eq!(r.next_into(&mut f), None);
    }

    #[test]
    fn quoted_fields_span_lines_and_the_next_record_knows_its_line() {
        assert_eq!(
            read("\"100.64.0.1,\n 100.64.0.2\",x\nnext,row\n").unwrap(),
            vec![
                rec(1, &["100.64.0.1,\n 100.64.0.2", "x"]),
                rec(3, &["next", "row"])
            ]
        );
    }

    #[test]
    fn text_after_a_closing_quote_is_kept_and_inner_quotes_are_plain() {
        assert_eq!(
            read("\"a\"b,c\"d\"\n").unwrap(),
            vec![rec(1, &["ab", "c\"d\""])]
        );
    }

    #[test]
    fn comments_are_skipped_and_counted() {
        assert_eq!(
            read("# one\n#two\na,b\n# three\nc\n# last").unwrap(),
            vec![rec(3, &["a", "b"]), rec(5, &["c"])]
        );
    }

    #[test]
    fn a_quote_that_never_closes_names_its_line() {
        assert_eq!(read("a\nb,\"c\nd\n"), Err(Unclosed { line: 2 }));
    }
}
