//! LIKE patterns: compiled once when a selector is parsed, matched against strings when
//! it is evaluated.

/// One element of a compiled LIKE pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LikeToken {
    /// A character that must match itself.
    Char(char),
    /// `_`: exactly one character.
    One,
    /// `%`: any sequence of characters, including none.
    Any,
}

/// A compiled LIKE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LikePattern {
    tokens: Vec<LikeToken>,
}

impl LikePattern {
    /// Compiles `pattern`. With an `escape` character, the escape followed by `%`, `_` or
    /// the escape itself stands for that character literally; an escape followed by
    /// anything else (or by nothing) is an ordinary character, as in ActiveMQ.
    pub(crate) fn new(pattern: &str, escape: Option<char>) -> LikePattern {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                if let Some(&next) = chars.peek() {
                    if next == '%' || next == '_' || Some(next) == escape {
                        chars.next();
                        tokens.push(LikeToken::Char(next));
                        continue;
                    }
                }
            }
            let token = match c {
                '%' => LikeToken::Any,
                '_' => LikeToken::One,
                c => LikeToken::Char(c),
            };
            // Consecutive `%` behave like one, and folding them keeps matching linear in
            // the common cases.
            if !(token == LikeToken::Any && tokens.last() == Some(&LikeToken::Any)) {
                tokens.push(token);
            }
        }
        LikePattern { tokens }
    }

    /// Whether the whole of `text` matches the pattern.
    ///
    /// This is the classic wildcard matcher that remembers only the most recent `%`: on a
    /// mismatch it lets that `%` absorb one more character and retries from there. Earlier
    /// `%`s never need revisiting, because anything they could absorb the latest one can
    /// absorb too. Time is O(pattern × text) at worst and memory is constant.
    pub(crate) fn matches(&self, text: &str) -> bool {
        self.matches_counting(text).0
    }

    /// [`LikePattern::matches`], also returning how many steps it took (for tests that
    /// bound the work without timing it).
    fn matches_counting(&self, text: &str) -> (bool, u64) {
        let pattern = &self.tokens;
        let mut p = 0;
        let mut t = 0;
        let mut steps = 0u64;
        // After a `%`: the pattern index following it and where in `text` it stopped.
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            steps += 1;
            let next_char = text[t..].chars().next();
            let advanced = match (pattern.get(p), next_char) {
                (Some(LikeToken::Any), _) => {
                    p += 1;
                    backtrack = Some((p, t));
                    continue;
                }
                (Some(LikeToken::One), Some(c)) => Some(c),
                (Some(LikeToken::Char(pc)), Some(c)) if *pc == c => Some(c),
                (None, None) => return (true, steps),
                _ => None,
            };
            if let Some(c) = advanced {
                p += 1;
                t += c.len_utf8();
                continue;
            }
            // Mismatch: let the latest `%` swallow one more character, if there is one.
            let Some((after_any, any_end)) = backtrack else {
                return (false, steps);
            };
            let Some(c) = text[any_end..].chars().next() else {
                return (false, steps);
            };
            let any_end = any_end + c.len_utf8();
            backtrack = Some((after_any, any_end));
            p = after_any;
            t = any_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, escape: Option<char>, text: &str) -> bool {
        LikePattern::new(pattern, escape).matches(text)
    }

    #[test]
    fn like_matching() {
        let cases: &[(&str, Option<char>, &str, bool)] = &[
            ("", None, "", true),
            ("", None, "a", false),
            ("%", None, "", true),
            ("%", None, "anything", true),
            ("_", None, "", false),
            ("_", None, "a", true),
            ("_", None, "ab", false),
            ("abc", None, "abc", true),
            ("abc", None, "abcd", false),
            ("abc", None, "ABC", false),
            ("a%", None, "a", true),
            ("a%", None, "abc", true),
            ("a%", None, "ba", false),
            ("%c", None, "abc", true),
            ("%c", None, "abcd", false),
            ("%b%", None, "abc", true),
            ("%b%", None, "ac", false),
            ("a_c", None, "abc", true),
            ("a_c", None, "ac", false),
            ("a%b%c", None, "aXXbYYc", true),
            ("a%b%c", None, "aXXcYYb", false),
            ("%aab", None, "aaaab", true),
            ("%ab%ab", None, "abab", true),
            ("%ab%ab", None, "abXab", true),
            ("%ab%ab", None, "aab", false),
            ("_%_", None, "a", false),
            ("_%_", None, "ab", true),
            ("%%%a", None, "bbba", true),
            // Unicode: `_` is one scalar value, not one byte.
            ("_", None, "é", true),
            ("_", None, "😀", true),
            ("__", None, "😀", false),
            ("caf_", None, "café", true),
            ("%€", None, "5€", true),
            ("ü%", None, "über", true),
            // Escapes.
            ("10!%", Some('!'), "10%", true),
            ("10!%", Some('!'), "100", false),
            ("a!_c", Some('!'), "a_c", true),
            ("a!_c", Some('!'), "abc", false),
            ("a!!b", Some('!'), "a!b", true),
            ("a!!b", Some('!'), "a!!b", false),
            // An escape before an ordinary character, or at the end, is itself literal.
            ("a!b", Some('!'), "a!b", true),
            ("a!", Some('!'), "a!", true),
            ("%\\_%", Some('\\'), "my_name", true),
            ("%\\_%", Some('\\'), "myname", false),
            ("x€%", Some('€'), "x%", true),
            ("x€%", Some('€'), "xy", false),
            // Without ESCAPE, a backslash is an ordinary character.
            ("a\\%", None, "a\\bc", true),
            // Characters that are special in regular expressions are literal.
            ("a.c", None, "abc", false),
            ("a.c", None, "a.c", true),
            ("(a|b)*", None, "(a|b)*", true),
            ("^$[]", None, "^$[]", true),
            // Newlines are ordinary characters.
            ("a%b", None, "a\nb", true),
            ("a_b", None, "a\nb", true),
            // MCollective identities.
            ("node%.example.com", None, "node12.example.com", true),
            ("node-_", None, "node-7", true),
        ];
        for &(pattern, escape, text, expected) in cases {
            assert_eq!(
                like(pattern, escape, text),
                expected,
                "{text:?} LIKE {pattern:?} ESCAPE {escape:?}"
            );
        }
    }

    #[test]
    fn like_is_not_exponential() {
        // This pattern defeats naive backtracking (2^n work); here the work is bounded by
        // O(n·m) steps, counted rather than timed.
        let text = "a".repeat(4000);
        let (n, m) = (text.chars().count() as u64, 81u64);
        let pattern = format!("{}b", "%a".repeat(40));
        let (matched, steps) = LikePattern::new(&pattern, None).matches_counting(&text);
        assert!(!matched);
        assert!(steps <= 2 * (n + 1) * (m + 1), "{steps} steps");
        let pattern = "%a".repeat(40);
        let (matched, steps) = LikePattern::new(&pattern, None).matches_counting(&text);
        assert!(matched);
        assert!(steps <= 2 * (n + 1) * (m + 1), "{steps} steps");
    }
}
