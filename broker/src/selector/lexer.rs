//! Tokenizer for selector text.
//!
//! The lexer turns the selector into a flat list of [`Token`]s, each carrying the byte span
//! it came from so that the parser can report errors at exact offsets. Whitespace
//! (space, tab, CR, LF, form feed), `-- line` comments and `/* block */` comments are
//! skipped. Keywords are recognised case-insensitively; identifiers keep their case.
//!
//! Integer literals are kept as unsigned magnitudes so that the parser can fold a leading
//! minus sign into `-9223372036854775808`, the one literal whose magnitude does not fit in
//! an `i64`.

use super::SelectorError;

/// A reserved word. Keywords are matched without regard to ASCII case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyword {
    Not,
    And,
    Or,
    Between,
    Like,
    Escape,
    In,
    Is,
    True,
    False,
    Null,
    /// ActiveMQ reserves `XPATH` for XML body selectors, which Stampede does not support.
    XPath,
    /// ActiveMQ reserves `XQUERY` for XML body selectors, which Stampede does not support.
    XQuery,
}

impl Keyword {
    /// All keywords with their canonical spelling.
    const ALL: [(&'static str, Keyword); 13] = [
        ("NOT", Keyword::Not),
        ("AND", Keyword::And),
        ("OR", Keyword::Or),
        ("BETWEEN", Keyword::Between),
        ("LIKE", Keyword::Like),
        ("ESCAPE", Keyword::Escape),
        ("IN", Keyword::In),
        ("IS", Keyword::Is),
        ("TRUE", Keyword::True),
        ("FALSE", Keyword::False),
        ("NULL", Keyword::Null),
        ("XPATH", Keyword::XPath),
        ("XQUERY", Keyword::XQuery),
    ];

    /// The keyword spelled by `word`, if any.
    fn lookup(word: &str) -> Option<Keyword> {
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, kw)| kw)
    }

    /// The canonical (upper-case) spelling, for error messages.
    pub(crate) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|&&(_, kw)| kw == self)
            .map_or("?", |&(name, _)| name)
    }
}

/// What kind of token was read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// An identifier; its text is the token's span.
    Ident,
    Keyword(Keyword),
    /// A string literal with `''` already unescaped to `'`.
    Str(String),
    /// An integer literal's magnitude (decimal, hex or octal).
    Int(u64),
    /// A floating-point literal.
    Float(f64),
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    LParen,
    RParen,
    Comma,
    /// The end of the input. Always the last token.
    Eof,
}

/// One token and the bytes it spans in the selector text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Token {
    /// A short human description of the token for error messages, e.g. `'='` or
    /// `identifier 'foo'`.
    pub(crate) fn describe(&self, src: &str) -> String {
        let text = src.get(self.start..self.end).unwrap_or("");
        match &self.kind {
            TokenKind::Ident => format!("identifier '{text}'"),
            TokenKind::Keyword(kw) => format!("keyword {}", kw.name()),
            TokenKind::Str(_) => "string literal".to_owned(),
            TokenKind::Int(_) | TokenKind::Float(_) => format!("number {text}"),
            TokenKind::Eof => "end of selector".to_owned(),
            _ => format!("'{text}'"),
        }
    }
}

/// Whether `b` may start an identifier.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

/// Whether `b` may continue an identifier.
fn is_ident_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Builds an error at `offset`.
fn error(offset: usize, message: impl Into<String>) -> SelectorError {
    SelectorError {
        offset,
        message: message.into(),
    }
}

/// Splits `src` into tokens, ending with a [`TokenKind::Eof`] token.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, SelectorError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                // A line comment runs to the next CR or LF, or to the end of the input.
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                match src[i + 2..].find("*/") {
                    Some(rel) => i = i + 2 + rel + 2,
                    None => return Err(error(start, "unterminated comment")),
                }
                continue;
            }
            b'\'' => {
                let (value, end) = string_literal(src, start)?;
                i = end;
                TokenKind::Str(value)
            }
            b'0'..=b'9' => {
                let (kind, end) = number(src, start)?;
                i = end;
                kind
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (kind, end) = number(src, start)?;
                i = end;
                kind
            }
            _ if is_ident_start(b) => {
                while i < bytes.len() && is_ident_part(bytes[i]) {
                    i += 1;
                }
                match Keyword::lookup(&src[start..i]) {
                    Some(kw) => TokenKind::Keyword(kw),
                    None => TokenKind::Ident,
                }
            }
            _ => {
                let (kind, len) = match (b, bytes.get(i + 1)) {
                    (b'<', Some(b'>')) => (TokenKind::Ne, 2),
                    (b'<', Some(b'=')) => (TokenKind::Le, 2),
                    (b'>', Some(b'=')) => (TokenKind::Ge, 2),
                    (b'<', _) => (TokenKind::Lt, 1),
                    (b'>', _) => (TokenKind::Gt, 1),
                    (b'=', _) => (TokenKind::Eq, 1),
                    (b'+', _) => (TokenKind::Plus, 1),
                    (b'-', _) => (TokenKind::Minus, 1),
                    (b'*', _) => (TokenKind::Star, 1),
                    (b'/', _) => (TokenKind::Slash, 1),
                    (b'%', _) => (TokenKind::Percent, 1),
                    (b'(', _) => (TokenKind::LParen, 1),
                    (b')', _) => (TokenKind::RParen, 1),
                    (b',', _) => (TokenKind::Comma, 1),
                    (b'!', Some(b'=')) => {
                        return Err(error(start, "'!=' is not an operator; use '<>'"));
                    }
                    (b'"', _) => {
                        return Err(error(
                            start,
                            "unexpected '\"'; string literals use single quotes",
                        ));
                    }
                    _ => {
                        // Non-ASCII bytes only start a character here, since every
                        // earlier token ended on a character boundary.
                        let c = src[start..].chars().next().unwrap_or('\u{fffd}');
                        return Err(error(start, format!("unexpected character {c:?}")));
                    }
                };
                i += len;
                kind
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(tokens)
}

/// Reads the string literal whose opening quote is at `start`. Returns the unescaped value
/// and the offset just past the closing quote.
fn string_literal(src: &str, start: usize) -> Result<(String, usize), SelectorError> {
    let bytes = src.as_bytes();
    let mut value = String::new();
    let mut chunk_start = start + 1;
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            // Quotes are ASCII, so both slice ends fall on character boundaries.
            value.push_str(&src[chunk_start..i]);
            if bytes.get(i + 1) == Some(&b'\'') {
                value.push('\'');
                i += 2;
                chunk_start = i;
            } else {
                return Ok((value, i + 1));
            }
        } else {
            i += 1;
        }
    }
    Err(error(start, "unterminated string literal"))
}

/// Length of the run of bytes from `i` that satisfy `pred`.
fn run(bytes: &[u8], i: usize, pred: impl Fn(u8) -> bool) -> usize {
    bytes[i.min(bytes.len())..]
        .iter()
        .take_while(|&&b| pred(b))
        .count()
}

/// Reads the numeric literal starting at `start`. Returns the token kind and the offset
/// just past the literal.
fn number(src: &str, start: usize) -> Result<(TokenKind, usize), SelectorError> {
    let bytes = src.as_bytes();
    let invalid = |msg: &str| error(start, msg.to_owned());
    let out_of_range = || error(start, "integer literal out of range");

    // Hexadecimal: 0x followed by at least one hex digit.
    if bytes[start] == b'0' && matches!(bytes.get(start + 1), Some(b'x' | b'X')) {
        let digits = run(bytes, start + 2, |b| b.is_ascii_hexdigit());
        if digits == 0 {
            return Err(invalid("invalid hexadecimal literal"));
        }
        let mut end = start + 2 + digits;
        let value = u64::from_str_radix(&src[start + 2..end], 16).map_err(|_| out_of_range())?;
        if matches!(bytes.get(end), Some(b'l' | b'L')) {
            end += 1;
        }
        check_terminated(bytes, start, end)?;
        return Ok((TokenKind::Int(value), end));
    }

    let int_digits = run(bytes, start, |b| b.is_ascii_digit());
    let mut end = start + int_digits;
    let mut is_float = false;
    if bytes.get(end) == Some(&b'.') {
        is_float = true;
        end += 1;
        end += run(bytes, end, |b| b.is_ascii_digit());
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        let exp_digits = run(bytes, end + 1 + sign, |b| b.is_ascii_digit());
        if exp_digits == 0 {
            return Err(invalid("invalid exponent in numeric literal"));
        }
        is_float = true;
        end += 1 + sign + exp_digits;
    }
    let text = &src[start..end];
    let mut token_end = end;
    match bytes.get(end) {
        Some(b'd' | b'D' | b'f' | b'F') => {
            // A float suffix also turns a plain digit run into a float, as in Java.
            is_float = true;
            token_end += 1;
        }
        Some(b'l' | b'L') if !is_float => token_end += 1,
        _ => {}
    }
    check_terminated(bytes, start, token_end)?;

    if is_float {
        let value: f64 = text
            .parse()
            .map_err(|_| invalid("invalid numeric literal"))?;
        return Ok((TokenKind::Float(value), token_end));
    }
    let (digits, radix) = if text.len() > 1 && text.starts_with('0') {
        if !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(invalid("invalid octal literal"));
        }
        (&text[1..], 8)
    } else {
        (text, 10)
    };
    let value = u64::from_str_radix(digits, radix).map_err(|_| out_of_range())?;
    Ok((TokenKind::Int(value), token_end))
}

/// Rejects a numeric literal that runs straight into an identifier character or a dot, such
/// as `12abc` or `1.2.3`.
fn check_terminated(bytes: &[u8], start: usize, end: usize) -> Result<(), SelectorError> {
    match bytes.get(end) {
        Some(&b) if is_ident_part(b) || b == b'.' => Err(error(start, "invalid numeric literal")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        tokenize(src)
            .unwrap_or_else(|e| panic!("{src:?}: {e}"))
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    fn err(src: &str) -> SelectorError {
        match tokenize(src) {
            Ok(tokens) => panic!("{src:?} tokenized to {tokens:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn operators_and_punctuation() {
        use TokenKind::*;
        assert_eq!(
            kinds("= <> < > <= >= + - * / % ( ) ,"),
            vec![
                Eq, Ne, Lt, Gt, Le, Ge, Plus, Minus, Star, Slash, Percent, LParen, RParen, Comma,
                Eof
            ]
        );
        // No spaces are needed between operators and operands.
        assert_eq!(kinds("a<>b"), vec![Ident, Ne, Ident, Eof]);
        assert_eq!(kinds("a<=-1"), vec![Ident, Le, Minus, Int(1), Eof]);
    }

    #[test]
    fn keywords_are_case_insensitive_identifiers_are_not() {
        use TokenKind::*;
        assert_eq!(
            kinds("not And oR BeTwEeN like ESCAPE in Is true FALSE null"),
            vec![
                Keyword(super::Keyword::Not),
                Keyword(super::Keyword::And),
                Keyword(super::Keyword::Or),
                Keyword(super::Keyword::Between),
                Keyword(super::Keyword::Like),
                Keyword(super::Keyword::Escape),
                Keyword(super::Keyword::In),
                Keyword(super::Keyword::Is),
                Keyword(super::Keyword::True),
                Keyword(super::Keyword::False),
                Keyword(super::Keyword::Null),
                Eof
            ]
        );
        // Words that merely start with a keyword are identifiers.
        assert_eq!(
            kinds("notify android Order_ $in _is"),
            vec![Ident; 5].into_iter().chain([Eof]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn identifier_spans() {
        let tokens = tokenize("  mc_identity$2 =").unwrap();
        assert_eq!(tokens[0].kind, TokenKind::Ident);
        assert_eq!((tokens[0].start, tokens[0].end), (2, 15));
        assert_eq!(tokens.last().map(|t| t.start), Some(17));
    }

    #[test]
    fn string_literals() {
        assert_eq!(
            kinds("'abc' '' 'it''s' '''' 'mc.node-1' 'ü€😀'"),
            vec![
                TokenKind::Str("abc".into()),
                TokenKind::Str(String::new()),
                TokenKind::Str("it's".into()),
                TokenKind::Str("'".into()),
                TokenKind::Str("mc.node-1".into()),
                TokenKind::Str("ü€😀".into()),
                TokenKind::Eof
            ]
        );
        // Comment markers inside strings are text.
        assert_eq!(
            kinds("'a -- b /* c */'"),
            vec![TokenKind::Str("a -- b /* c */".into()), TokenKind::Eof]
        );
    }

    #[test]
    fn integer_literals() {
        use TokenKind::*;
        assert_eq!(
            kinds("0 7 42 42L 42l 0x1F 0XffL 017 00 9223372036854775808"),
            vec![
                Int(0),
                Int(7),
                Int(42),
                Int(42),
                Int(42),
                Int(31),
                Int(255),
                Int(15),
                Int(0),
                Int(9_223_372_036_854_775_808),
                Eof
            ]
        );
    }

    #[test]
    fn float_literals() {
        use TokenKind::*;
        assert_eq!(
            kinds("1.5 5. .5 5e3 5E+3 5.e-1 .5E1 2.5d 2.5F 3f 09.5"),
            vec![
                Float(1.5),
                Float(5.0),
                Float(0.5),
                Float(5000.0),
                Float(5000.0),
                Float(0.5),
                Float(5.0),
                Float(2.5),
                Float(2.5),
                Float(3.0),
                Float(9.5),
                Eof
            ]
        );
    }

    #[test]
    fn comments_are_skipped() {
        use TokenKind::*;
        assert_eq!(
            kinds("a -- trailing = 'x'\n= /* inline ** */ 1 -- at end"),
            vec![Ident, Eq, Int(1), Eof]
        );
        assert_eq!(kinds("/**/a/***/"), vec![Ident, Eof]);
        // A line comment may also end at a carriage return.
        assert_eq!(kinds("-- x\ra"), vec![Ident, Eof]);
        // Two minus signs always start a comment, as in ActiveMQ.
        assert_eq!(kinds("5--3"), vec![Int(5), Eof]);
    }

    #[test]
    fn lexical_errors_have_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("a = 'abc", 4, "unterminated string literal"),
            ("a = 'it''", 4, "unterminated string literal"),
            ("a /* never closed", 2, "unterminated comment"),
            ("a # b", 2, "unexpected character '#'"),
            ("a = ü", 4, "unexpected character 'ü'"),
            ("a != 1", 2, "'!=' is not an operator"),
            ("a = \"x\"", 4, "single quotes"),
            ("x = 0x", 4, "invalid hexadecimal literal"),
            ("x = 0xG", 4, "invalid hexadecimal literal"),
            ("x = 08", 4, "invalid octal literal"),
            ("x = 12abc", 4, "invalid numeric literal"),
            ("x = 1.2.3", 4, "invalid numeric literal"),
            ("x = 1e", 4, "invalid exponent"),
            ("x = 1.5L", 4, "invalid numeric literal"),
            (
                "x = 18446744073709551616",
                4,
                "integer literal out of range",
            ),
            ("x = 0x1_0000_0000_0000_0000", 4, "invalid numeric literal"),
            ("x = 0x10000000000000000", 4, "integer literal out of range"),
            ("a . b", 2, "unexpected character '.'"),
            ("a = '\u{1}' \u{1}", 8, "unexpected character '\\u{1}'"),
        ];
        for &(src, offset, msg) in cases {
            let e = err(src);
            assert_eq!(e.offset, offset, "{src:?}: {e}");
            assert!(e.message.contains(msg), "{src:?}: {e}");
            assert!(!e.message.contains('\n'), "{src:?}: {e}");
        }
    }
}
