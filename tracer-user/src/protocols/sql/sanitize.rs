//! SQL text sanitising: literals become `?` so statements can be exported
//! without the values they carry (which may be secrets), and operation names.
//!
//! This is a single-pass lexer, not a parser: it only needs to know where
//! literals, comments and quoted identifiers start and end. Anything it does
//! not understand is copied through, except that an unterminated literal or
//! comment swallows the rest of the text (the safe direction).

/// Quoting rules that differ between servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `"x"` is an identifier; `E'..'` and `$tag$..$tag$` are strings;
    /// backslash is literal in `'..'` (`standard_conforming_strings`).
    Postgres,
    /// `"x"` is a string (unless `ANSI_QUOTES`), `` `x` `` an identifier;
    /// backslash escapes inside strings.
    Mysql,
}

/// `sql` with every literal replaced by `?`, comments removed, runs of
/// whitespace collapsed to one space, and `IN (?, ?, ...)` collapsed to
/// `IN (?)`. Keywords, identifiers and placeholders (`?`, `$1`, `:name`) stay.
pub fn sanitize(sql: &str, dialect: Dialect) -> String {
    let mut out = Sanitized::with_capacity(sql.len());
    let bytes = sql.as_bytes();
    let mut pos = 0;
    while let Some(&byte) = bytes.get(pos) {
        if !sql.is_char_boundary(pos) {
            // An escape skipped into a multi-byte character: resume after it.
            pos = next_char_boundary(sql, pos);
            continue;
        }
        pos = match byte {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                out.space();
                pos + 1
            }
            b'-' if bytes.get(pos + 1) == Some(&b'-') => {
                out.space();
                end_of_line(bytes, pos)
            }
            b'#' if dialect == Dialect::Mysql => {
                out.space();
                end_of_line(bytes, pos)
            }
            b'/' if bytes.get(pos + 1) == Some(&b'*') => {
                out.space();
                end_of_block_comment(bytes, pos + 2)
            }
            b'\'' => {
                out.literal();
                end_of_quoted(bytes, pos + 1, b'\'', dialect == Dialect::Mysql)
            }
            b'"' if dialect == Dialect::Mysql => {
                out.literal();
                end_of_quoted(bytes, pos + 1, b'"', true)
            }
            b'"' | b'`' => {
                let end = end_of_quoted(bytes, pos + 1, byte, false);
                out.copy(slice(sql, pos, end));
                end
            }
            b'$' => dollar(sql, pos, &mut out),
            b'0'..=b'9' => {
                out.literal();
                end_of_number(bytes, pos)
            }
            b'.' if bytes.get(pos + 1).is_some_and(u8::is_ascii_digit) => {
                out.literal();
                end_of_number(bytes, pos)
            }
            b'(' => {
                out.open_paren();
                pos + 1
            }
            b')' => {
                out.close_paren();
                pos + 1
            }
            _ if is_word_start(byte) => word(sql, pos, dialect, &mut out),
            _ => {
                let end = next_char_boundary(sql, pos);
                out.copy(slice(sql, pos, end));
                end
            }
        };
    }
    out.finish()
}

/// The statement's verb, upper-cased: `SELECT`, `INSERT`, `BEGIN`, ...
/// Leading comments, whitespace and parentheses are skipped. For `WITH`
/// the verb of the main statement is returned when it can be found.
pub fn operation_name(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let start = skip_insignificant(bytes, 0, true);
    let first = word_at(sql, start)?;
    if !first.eq_ignore_ascii_case("WITH") {
        return Some(first.to_ascii_uppercase());
    }
    Some(main_verb_after_with(sql, start + first.len()).unwrap_or_else(|| "WITH".to_owned()))
}

const MAX_OPERATION_LEN: usize = 32;

/// The verb following the common table expressions of a `WITH` clause: the
/// first of the usual verbs found outside any parentheses.
fn main_verb_after_with(sql: &str, from: usize) -> Option<String> {
    const VERBS: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"];
    let bytes = sql.as_bytes();
    let mut depth = 0usize;
    let mut pos = from;
    while let Some(&byte) = bytes.get(pos) {
        pos = match byte {
            b'(' => {
                depth += 1;
                pos + 1
            }
            b')' => {
                depth = depth.saturating_sub(1);
                pos + 1
            }
            b'\'' => end_of_quoted(bytes, pos + 1, b'\'', false),
            b'"' | b'`' => end_of_quoted(bytes, pos + 1, byte, false),
            b'-' if bytes.get(pos + 1) == Some(&b'-') => end_of_line(bytes, pos),
            b'/' if bytes.get(pos + 1) == Some(&b'*') => end_of_block_comment(bytes, pos + 2),
            _ if is_word_start(byte) => {
                let end = end_of_word(bytes, pos);
                let word = slice(sql, pos, end);
                if depth == 0 {
                    if let Some(verb) = VERBS.iter().find(|v| word.eq_ignore_ascii_case(v)) {
                        return Some((*verb).to_owned());
                    }
                }
                end
            }
            _ => next_char_boundary(sql, pos),
        };
    }
    None
}

/// Position of the first byte that is not whitespace, a comment or (when
/// `parens`) an opening parenthesis.
fn skip_insignificant(bytes: &[u8], mut pos: usize, parens: bool) -> usize {
    while let Some(&byte) = bytes.get(pos) {
        pos = match byte {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | b';' => pos + 1,
            b'(' if parens => pos + 1,
            b'-' if bytes.get(pos + 1) == Some(&b'-') => end_of_line(bytes, pos),
            b'#' if bytes.get(pos + 1) != Some(&b'{') => end_of_line(bytes, pos),
            b'/' if bytes.get(pos + 1) == Some(&b'*') => end_of_block_comment(bytes, pos + 2),
            _ => return pos,
        };
    }
    pos
}

fn word_at(sql: &str, pos: usize) -> Option<&str> {
    let bytes = sql.as_bytes();
    if !bytes.get(pos).is_some_and(u8::is_ascii_alphabetic) {
        return None;
    }
    let mut end = pos;
    while bytes.get(end).is_some_and(u8::is_ascii_alphabetic) {
        end += 1;
    }
    let word = sql.get(pos..end)?;
    (word.len() <= MAX_OPERATION_LEN).then_some(word)
}

fn is_word_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

fn end_of_word(bytes: &[u8], pos: usize) -> usize {
    let mut end = pos;
    while bytes.get(end).copied().is_some_and(is_word_byte) {
        end += 1;
    }
    end
}

/// A word: an identifier or keyword, or a prefixed string literal such as
/// `E'..'`, `X'..'`, `B'..'`, `N'..'`, `U&'..'` or MySQL's `_utf8mb4'..'`.
fn word(sql: &str, pos: usize, dialect: Dialect, out: &mut Sanitized) -> usize {
    let bytes = sql.as_bytes();
    let end = end_of_word(bytes, pos);
    let word = slice(sql, pos, end);
    match bytes.get(end) {
        Some(b'\'') if is_string_prefix(word) => {
            let escapes = dialect == Dialect::Mysql || word.eq_ignore_ascii_case("e");
            out.literal();
            return end_of_quoted(bytes, end + 1, b'\'', escapes);
        }
        Some(b'&') if word.eq_ignore_ascii_case("u") && bytes.get(end + 1) == Some(&b'\'') => {
            out.literal();
            return end_of_quoted(bytes, end + 2, b'\'', false);
        }
        _ => {}
    }
    out.word(word);
    end
}

fn is_string_prefix(word: &str) -> bool {
    ["e", "x", "b", "n"]
        .iter()
        .any(|p| word.eq_ignore_ascii_case(p))
        || (word.starts_with('_') && word.len() > 1)
}

/// `$1` placeholders stay; `$tag$ ... $tag$` and `$$ ... $$` are strings.
fn dollar(sql: &str, pos: usize, out: &mut Sanitized) -> usize {
    let bytes = sql.as_bytes();
    let mut end = pos + 1;
    if bytes.get(end).is_some_and(u8::is_ascii_digit) {
        while bytes.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        out.copy(slice(sql, pos, end));
        return end;
    }
    while bytes
        .get(end)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
    {
        end += 1;
    }
    if bytes.get(end) != Some(&b'$') {
        out.copy("$");
        return pos + 1;
    }
    let tag = bytes.get(pos..=end).unwrap_or_default();
    out.literal();
    let body = end + 1;
    match find(bytes, body, tag) {
        Some(close) => close + tag.len(),
        None => bytes.len(),
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(from);
    }
    let rest = haystack.get(from..)?;
    rest.windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// End (exclusive) of a literal or quoted identifier whose opening quote is
/// just before `pos`; a doubled quote stands for itself.
fn end_of_quoted(bytes: &[u8], mut pos: usize, quote: u8, backslash_escapes: bool) -> usize {
    while let Some(&byte) = bytes.get(pos) {
        if backslash_escapes && byte == b'\\' {
            pos += 2;
        } else if byte == quote {
            if bytes.get(pos + 1) == Some(&quote) {
                pos += 2;
            } else {
                return pos + 1;
            }
        } else {
            pos += 1;
        }
    }
    bytes.len()
}

fn end_of_line(bytes: &[u8], pos: usize) -> usize {
    bytes
        .get(pos..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(bytes.len(), |at| pos + at + 1)
}

fn end_of_block_comment(bytes: &[u8], pos: usize) -> usize {
    find(bytes, pos, b"*/").map_or(bytes.len(), |at| at + 2)
}

/// Decimal, hex (`0x1F`), binary (`0b01`) and floating-point numbers.
fn end_of_number(bytes: &[u8], pos: usize) -> usize {
    let mut end = pos;
    let radix_prefix = bytes.get(pos) == Some(&b'0')
        && matches!(
            bytes.get(pos + 1),
            Some(b'x' | b'X' | b'b' | b'B' | b'o' | b'O')
        );
    if radix_prefix {
        end += 2;
        while bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_hexdigit() || *b == b'_')
        {
            end += 1;
        }
        return end;
    }
    while bytes
        .get(end)
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.' || *b == b'_')
    {
        end += 1;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exp = end + 1;
        if matches!(bytes.get(exp), Some(b'+' | b'-')) {
            exp += 1;
        }
        if bytes.get(exp).is_some_and(u8::is_ascii_digit) {
            end = exp;
            while bytes.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
    }
    end
}

/// `sql[from..to]`, or nothing if those are not character boundaries.
fn slice(sql: &str, from: usize, to: usize) -> &str {
    sql.get(from..to).unwrap_or_default()
}

fn next_char_boundary(sql: &str, pos: usize) -> usize {
    let mut end = pos + 1;
    while end < sql.len() && !sql.is_char_boundary(end) {
        end += 1;
    }
    end
}

/// The output being built, with the little state needed to collapse
/// whitespace and `IN` lists.
struct Sanitized {
    text: String,
    pending_space: bool,
    /// The last word written was `IN`.
    after_in: bool,
    /// Where the `(` of an `IN (` list was written, while inside it.
    in_list_open: Option<usize>,
}

impl Sanitized {
    fn with_capacity(capacity: usize) -> Self {
        Sanitized {
            text: String::with_capacity(capacity),
            pending_space: false,
            after_in: false,
            in_list_open: None,
        }
    }

    fn space(&mut self) {
        self.pending_space = !self.text.is_empty();
    }

    fn flush_space(&mut self) {
        if std::mem::take(&mut self.pending_space) {
            self.text.push(' ');
        }
    }

    fn copy(&mut self, s: &str) {
        self.flush_space();
        self.text.push_str(s);
        self.after_in = false;
    }

    fn word(&mut self, word: &str) {
        self.copy(word);
        self.after_in = word.eq_ignore_ascii_case("in");
    }

    fn literal(&mut self) {
        self.copy("?");
    }

    fn open_paren(&mut self) {
        let opens_in_list = self.after_in;
        self.copy("(");
        self.in_list_open = opens_in_list.then(|| self.text.len() - 1);
    }

    fn close_paren(&mut self) {
        if let Some(open) = self.in_list_open.take() {
            let inside = self.text.get(open + 1..).unwrap_or_default();
            let only_literals =
                inside.contains('?') && inside.bytes().all(|b| matches!(b, b'?' | b',' | b' '));
            if only_literals {
                self.text.truncate(open);
                self.text.push_str("(?");
                self.pending_space = false;
            }
        }
        self.pending_space = false;
        self.copy(")");
    }

    fn finish(self) -> String {
        self.text
    }
}
