//! Glob patterns over `/`-separated relative paths.
//!
//! `**` as a whole segment matches any number of segments (including none);
//! within a segment `*` matches any run of characters, `?` one character and
//! `[...]` one character of a set (`[!...]` or `[^...]` negates, `a-z` is a
//! range). A leading `.` is matched like any other character.

/// Why a pattern is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("unclosed '[' in pattern {0:?}")]
    UnclosedClass(String),
    #[error("pattern must be relative: {0:?}")]
    Absolute(String),
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    AnyDepth,
    Name(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyRun,
    AnyChar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if pattern.starts_with('/') {
            return Err(PatternError::Absolute(pattern.to_string()));
        }
        let segments = pattern
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(|s| match s {
                "**" => Ok(Segment::AnyDepth),
                _ => tokens(s).map(Segment::Name),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if segments.is_empty() {
            return Err(PatternError::Empty);
        }
        Ok(Self { segments })
    }

    /// Whether the pattern spans directories (`/` or `**`), as opposed to
    /// naming a single file.
    pub fn is_path_pattern(pattern: &str) -> bool {
        pattern.contains('/') || pattern.contains("**")
    }

    /// Whether `path` (relative, split into segments) matches.
    pub fn matches(&self, path: &[&str]) -> bool {
        match_segments(&self.segments, path)
    }

    /// Whether anything strictly below the directory `prefix` can match.
    pub fn may_descend(&self, prefix: &[&str]) -> bool {
        may_descend(&self.segments, prefix)
    }
}

fn match_segments(pattern: &[Segment], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=path.len()).any(|k| match_segments(rest, &path[k..]))
        }
        Some((Segment::Name(tokens), rest)) => match path.split_first() {
            Some((name, path_rest)) => match_name(tokens, name) && match_segments(rest, path_rest),
            None => false,
        },
    }
}

fn may_descend(pattern: &[Segment], prefix: &[&str]) -> bool {
    match (pattern.split_first(), prefix.split_first()) {
        (None, _) => false,
        (Some((Segment::AnyDepth, _)), _) => true,
        (Some(_), None) => true,
        (Some((Segment::Name(tokens), rest)), Some((name, prefix_rest))) => {
            match_name(tokens, name) && may_descend(rest, prefix_rest)
        }
    }
}

fn tokens(segment: &str) -> Result<Vec<Token>, PatternError> {
    let mut out = Vec::new();
    let mut chars = segment.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' => Token::AnyRun,
            '?' => Token::AnyChar,
            '[' => {
                class(&mut chars).ok_or_else(|| PatternError::UnclosedClass(segment.to_string()))?
            }
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    Ok(out)
}

/// Parses the rest of a `[...]` class; `None` if it never closes.
fn class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Token> {
    let negated = chars.next_if(|c| *c == '!' || *c == '^').is_some();
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next()?;
        if c == ']' && !first {
            return Some(Token::Class { negated, ranges });
        }
        first = false;
        let end = match chars.peek() {
            Some('-') => {
                chars.next();
                match chars.next()? {
                    ']' => {
                        ranges.push((c, c));
                        ranges.push(('-', '-'));
                        return Some(Token::Class { negated, ranges });
                    }
                    end => end,
                }
            }
            _ => c,
        };
        ranges.push((c, end));
    }
}

/// Matches one name against tokens, with backtracking over the last `*`.
fn match_name(tokens: &[Token], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::AnyRun) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if token_matches(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((star_t, star_n)) => {
                    star = Some((star_t, star_n + 1));
                    t = star_t + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::AnyRun)
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(expected) => *expected == c,
        Token::AnyChar => true,
        Token::AnyRun => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        Pattern::new(pattern)
            .expect("valid pattern")
            .matches(&segments)
    }

    #[test]
    fn single_segment_wildcards() {
        assert!(matches("*", "a.txt"));
        assert!(matches("*", ".hidden"));
        assert!(matches("*.py", "x.py"));
        assert!(!matches("*.py", "x.pyc"));
        assert!(!matches("*", "a/b"));
        assert!(matches("?.rs", "a.rs"));
        assert!(!matches("?.rs", "ab.rs"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(matches("é?", "éü"));
    }

    #[test]
    fn classes() {
        assert!(matches("[abc].txt", "b.txt"));
        assert!(!matches("[!abc].txt", "b.txt"));
        assert!(matches("[a-c]1", "c1"));
        assert!(matches("x[-]", "x-"));
        assert!(matches("[]]", "]"));
        assert_eq!(
            Pattern::new("[ab"),
            Err(PatternError::UnclosedClass("[ab".into()))
        );
    }

    #[test]
    fn double_star_spans_directories() {
        assert!(matches("**/*.py", "a.py"));
        assert!(matches("**/*.py", "x/y/a.py"));
        assert!(matches("src/**", "src/a/b"));
        assert!(matches("src/**/mod.rs", "src/mod.rs"));
        assert!(matches("src/**/mod.rs", "src/a/b/mod.rs"));
        assert!(!matches("src/**/mod.rs", "lib/a/mod.rs"));
        assert!(matches("**", "anything/at/all"));
    }

    #[test]
    fn descent_pruning() {
        let p = Pattern::new("src/*/x.rs").expect("valid");
        assert!(p.may_descend(&[]));
        assert!(p.may_descend(&["src"]));
        assert!(p.may_descend(&["src", "a"]));
        assert!(!p.may_descend(&["lib"]));
        assert!(!p.may_descend(&["src", "a", "x.rs"]));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Pattern::new(""), Err(PatternError::Empty));
        assert_eq!(
            Pattern::new("/abs"),
            Err(PatternError::Absolute("/abs".into()))
        );
    }
}
