//! LIKE patterns: compiled once when a selector is parsed, matched against strings when
//! it is evaluated, in time linear in the text for `%`-separated literal pieces and within
//! a step budget for pieces holding `_`.

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

/// Most character comparisons one LIKE evaluation may make on the parts of its pattern
/// that hold `_` before it gives up and evaluates to UNKNOWN (the message is not
/// selected). Parts without `_` are found by a linear substring search and never count.
/// Bounds the core's work per message per subscription whatever the pattern and text.
pub(crate) const LIKE_STEPS_MAX: u64 = 100_000;

/// A compiled LIKE pattern: the pieces between its `%`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LikePattern {
    /// The pattern starts with `%`: the first segment need not start the text.
    leading_any: bool,
    /// The pattern ends with `%`: the last segment need not end the text.
    trailing_any: bool,
    /// Non-empty pieces between `%`s, in order (one, possibly empty, without any `%`).
    segments: Vec<Segment>,
}

/// A run of pattern characters with no `%`: each token matches exactly one character.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    tokens: Vec<LikeToken>,
    /// The segment as a string when it has no `_`, for a linear substring search.
    literal: Option<String>,
}

impl Segment {
    fn new(tokens: Vec<LikeToken>) -> Segment {
        let literal = tokens
            .iter()
            .map(|t| match t {
                LikeToken::Char(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<String>>();
        Segment { tokens, literal }
    }

    /// Where the segment ends if it matches `text` starting at byte `at`.
    fn match_at(&self, text: &str, at: usize, steps: &mut u64) -> Option<usize> {
        if let Some(lit) = &self.literal {
            return text[at..].starts_with(lit.as_str()).then(|| at + lit.len());
        }
        let mut end = at;
        let mut chars = text[at..].chars();
        for token in &self.tokens {
            *steps += 1;
            let c = chars.next()?;
            match token {
                LikeToken::Char(pc) if *pc != c => return None,
                _ => end += c.len_utf8(),
            }
        }
        Some(end)
    }

    /// The leftmost match in `text` at or after byte `from`, as (start, end), or `Err` when
    /// the step budget ran out.
    fn find(&self, text: &str, from: usize, steps: &mut u64) -> Result<Option<usize>, ()> {
        if let Some(lit) = &self.literal {
            return Ok(text[from..]
                .find(lit.as_str())
                .map(|i| from + i + lit.len()));
        }
        for (i, _) in text[from..].char_indices() {
            if let Some(end) = self.match_at(text, from + i, steps) {
                return Ok(Some(end));
            }
            if *steps > LIKE_STEPS_MAX {
                return Err(());
            }
        }
        Ok(None)
    }
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
            tokens.push(match c {
                '%' => LikeToken::Any,
                '_' => LikeToken::One,
                c => LikeToken::Char(c),
            });
        }
        let leading_any = tokens.first() == Some(&LikeToken::Any);
        let trailing_any = tokens.last() == Some(&LikeToken::Any);
        let mut segments: Vec<Segment> = tokens
            .split(|t| *t == LikeToken::Any)
            .filter(|s| !s.is_empty())
            .map(|s| Segment::new(s.to_vec()))
            .collect();
        if segments.is_empty() && !leading_any {
            // The empty pattern matches only the empty text.
            segments.push(Segment::new(Vec::new()));
        }
        LikePattern {
            leading_any,
            trailing_any,
            segments,
        }
    }

    /// Whether the whole of `text` matches the pattern: `None` (UNKNOWN) when deciding
    /// would take more than [`LIKE_STEPS_MAX`] steps.
    ///
    /// The first segment is anchored at the start (unless the pattern starts with `%`), the
    /// last at the end (unless it ends with `%`), and each one between is matched at its
    /// leftmost place after the previous: taking the leftmost place never loses a match,
    /// because every later segment then has the most text left. Segments without `_` are
    /// found by `str::find` (linear time), so only `_` segments cost steps.
    pub(crate) fn matches(&self, text: &str) -> Option<bool> {
        match self.matches_counting(text) {
            (Ok(matched), _) => Some(matched),
            (Err(()), _) => None,
        }
    }

    /// [`LikePattern::matches`], also returning how many steps it took (for tests that
    /// bound the work without timing it).
    fn matches_counting(&self, text: &str) -> (Result<bool, ()>, u64) {
        let mut steps = 0u64;
        let result = self.decide(text, &mut steps);
        (result, steps)
    }

    fn decide(&self, text: &str, steps: &mut u64) -> Result<bool, ()> {
        let mut segments = &self.segments[..];
        let mut pos = 0;
        let mut end = text.len();
        if !self.leading_any {
            let Some((first, rest)) = segments.split_first() else {
                return Ok(text.is_empty());
            };
            match first.match_at(text, 0, steps) {
                Some(e) => pos = e,
                None => return Ok(false),
            }
            if rest.is_empty() && !self.trailing_any {
                return Ok(pos == text.len());
            }
            segments = rest;
        }
        if !self.trailing_any {
            let Some((last, rest)) = segments.split_last() else {
                return Ok(true);
            };
            // The last segment covers exactly its length in characters at the end.
            let n = last.tokens.len();
            let start = if n == 0 {
                text.len()
            } else {
                match text.char_indices().rev().nth(n - 1) {
                    Some((i, _)) => i,
                    None => return Ok(false),
                }
            };
            if start < pos || last.match_at(text, start, steps) != Some(text.len()) {
                return Ok(false);
            }
            end = start;
            segments = rest;
        }
        let window = &text[..end];
        for segment in segments {
            match segment.find(window, pos, steps)? {
                Some(e) => pos = e,
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, escape: Option<char>, text: &str) -> bool {
        LikePattern::new(pattern, escape)
            .matches(text)
            .expect("within budget")
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
        // This pattern defeats naive backtracking (2^n work); its segments have no `_`,
        // so it costs no counted steps at all (linear substring searches).
        let text = "a".repeat(4000);
        let pattern = format!("{}b", "%a".repeat(40));
        let (matched, steps) = LikePattern::new(&pattern, None).matches_counting(&text);
        assert_eq!((matched, steps), (Ok(false), 0));
        let pattern = "%a".repeat(40);
        let (matched, steps) = LikePattern::new(&pattern, None).matches_counting(&text);
        assert_eq!((matched, steps), (Ok(true), 0));
        // The hostile case of issue 10: `%` then 4,000 `a` then `b`, against 10,000 `a`.
        let text = "a".repeat(10_000);
        let pattern = format!("%{}b", "a".repeat(4000));
        assert!(!like(&pattern, None, &text));
        assert!(like(&pattern, None, &format!("{text}b")));
    }

    #[test]
    fn like_with_underscores_gives_up_at_its_budget() {
        // `%a_a_…b%`: each place in the text costs up to the segment's length in steps.
        // (Without the last `%` the segment is anchored at the end: one try, no search.)
        let text = "a".repeat(10_000);
        let anchored = format!("%{}b", "a_".repeat(2000));
        let (matched, steps) = LikePattern::new(&anchored, None).matches_counting(&text);
        assert_eq!(matched, Ok(false));
        assert!(steps <= 4001, "{steps} steps");
        let pattern = format!("{anchored}%");
        let (matched, steps) = LikePattern::new(&pattern, None).matches_counting(&text);
        assert_eq!(matched, Err(()));
        assert!(steps <= LIKE_STEPS_MAX + 4001, "{steps} steps");
        assert_eq!(LikePattern::new(&pattern, None).matches(&text), None);
        // A short `_` segment over the same text is decided within the budget.
        let (matched, steps) = LikePattern::new("%a_b%", None).matches_counting(&text);
        assert_eq!(matched, Ok(false));
        assert!(steps <= 3 * 10_000, "{steps} steps");
    }

    #[test]
    fn like_agrees_with_a_reference_matcher() {
        // A plain recursive matcher over small alphabets, every pattern and text up to a
        // few characters: the segment matcher must agree with it everywhere.
        fn reference(p: &[char], t: &[char]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some(('%', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
                Some(('_', rest)) => !t.is_empty() && reference(rest, &t[1..]),
                Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
            }
        }
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                layer = layer
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }
        let patterns = all(&['a', 'b', '%', '_'], 4);
        let texts = all(&['a', 'b', 'é'], 5);
        for p in &patterns {
            let compiled = LikePattern::new(p, None);
            let pc: Vec<char> = p.chars().collect();
            for t in &texts {
                let tc: Vec<char> = t.chars().collect();
                assert_eq!(
                    compiled.matches(t),
                    Some(reference(&pc, &tc)),
                    "{t:?} LIKE {p:?}"
                );
            }
        }
    }
}
