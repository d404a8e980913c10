//! Query templates: a spec's `query:` override, checked when the spec is loaded and filled in
//! for its deployment at every tick.
//!
//! A template is PromQL with `{{deployment}}`, `{{namespace}}` and `{{selector}}` in it (spaces
//! inside the braces are allowed). The check is local, so it runs before lull starts and on every
//! reload without a Prometheus: every variable is known and closed, brackets nest, and strings are
//! closed. Whether the PromQL means anything is Prometheus' call, at run time, in the status.

use std::fmt;

/// The variables a template may use, in documentation order.
pub const VARIABLES: [&str; 3] = ["deployment", "namespace", "selector"];

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing but spaces and comments.
    #[error("the query is empty")]
    Empty,
    /// `{{name}}` with a name lull does not fill in.
    #[error(
        "unknown variable `{{{{{name}}}}}` at {at}; use {{{{deployment}}}}, {{{{namespace}}}} or {{{{selector}}}}"
    )]
    UnknownVariable {
        /// The name between the braces.
        name: String,
        /// Where it starts.
        at: Position,
    },
    /// `{{` without its `}}`.
    #[error("`{{{{` at {at} is not closed by `}}}}`")]
    UnclosedVariable {
        /// Where it starts.
        at: Position,
    },
    /// An opening bracket without its closing one.
    #[error("`{open}` at {at} is not closed")]
    Unclosed {
        /// The bracket.
        open: char,
        /// Where it is.
        at: Position,
    },
    /// A closing bracket that matches nothing open.
    #[error("`{close}` at {at} closes nothing")]
    Unopened {
        /// The bracket.
        close: char,
        /// Where it is.
        at: Position,
    },
    /// A closing bracket of another kind than the one open.
    #[error("`{close}` at {at} does not close `{open}` at {opened}")]
    Mismatched {
        /// The open bracket.
        open: char,
        /// Where it is.
        opened: Position,
        /// The closing bracket.
        close: char,
        /// Where it is.
        at: Position,
    },
    /// A string literal without its closing quote.
    #[error("the string starting with {quote} at {at} is not closed")]
    UnclosedString {
        /// The quote that opened it.
        quote: char,
        /// Where it starts.
        at: Position,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in a query, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line within the query.
    pub line: usize,
    /// Character within the line.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 1 {
            write!(f, "column {}", self.column)
        } else {
            write!(f, "line {}, column {}", self.line, self.column)
        }
    }
}

/// A variable lull fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variable {
    Deployment,
    Namespace,
    Selector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Variable(Variable),
}

/// What a template's variables stand for, for one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The deployment's slug.
    pub deployment: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// PromQL label matchers that select its pods, without braces.
    pub selector: &'a str,
}

/// A checked query template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses and checks `text`.
    pub fn parse(text: &str) -> Result<Self> {
        let (pieces, masked) = split(text)?;
        check_syntax(&masked)?;
        Ok(Self { pieces })
    }

    /// The query for one deployment.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Variable(Variable::Deployment) => out.push_str(vars.deployment),
                Piece::Variable(Variable::Namespace) => out.push_str(vars.namespace),
                Piece::Variable(Variable::Selector) => out.push_str(vars.selector),
            }
        }
        out
    }
}

/// Where each character of a text is.
fn positions(text: &str) -> Vec<(usize, char, Position)> {
    let (mut line, mut column) = (1, 1);
    let mut out = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        out.push((i, c, Position { line, column }));
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    out
}

/// Splits `text` into text and variables, and returns it with every variable replaced by spaces
/// so that the syntax check sees PromQL only.
fn split(text: &str) -> Result<(Vec<Piece>, String)> {
    let chars = positions(text);
    let mut pieces = Vec::new();
    let mut masked = String::with_capacity(text.len());
    let mut literal = String::new();
    let mut i = 0;
    while i < chars.len() {
        let (_, c, at) = chars[i];
        let opens = c == '{' && chars.get(i + 1).is_some_and(|n| n.1 == '{');
        // In `{{{selector}}}` the first brace is PromQL's and the last two open the variable.
        let last_pair = chars.get(i + 2).is_none_or(|n| n.1 != '{');
        if !(opens && last_pair) {
            literal.push(c);
            masked.push(c);
            i += 1;
            continue;
        }
        let close = (i + 2..chars.len().saturating_sub(1))
            .find(|&j| chars[j].1 == '}' && chars[j + 1].1 == '}')
            .ok_or(Error::UnclosedVariable { at })?;
        let name: String = chars[i + 2..close].iter().map(|c| c.1).collect();
        let variable = match name.trim() {
            "deployment" => Variable::Deployment,
            "namespace" => Variable::Namespace,
            "selector" => Variable::Selector,
            _ => {
                return Err(Error::UnknownVariable {
                    name: name.trim().to_owned(),
                    at,
                });
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Variable(variable));
        masked.extend(std::iter::repeat_n(' ', close + 2 - i));
        i = close + 2;
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok((pieces, masked))
}

/// Brackets nest and strings close; comments (`#` to the end of the line) are skipped.
fn check_syntax(text: &str) -> Result<()> {
    let chars = positions(text);
    let mut open: Vec<(char, Position)> = Vec::new();
    let mut empty = true;
    let mut i = 0;
    while i < chars.len() {
        let (_, c, at) = chars[i];
        i += 1;
        match c {
            '#' => {
                while i < chars.len() && chars[i].1 != '\n' {
                    i += 1;
                }
                continue;
            }
            '"' | '\'' | '`' => {
                // Backquoted strings are raw; the others take backslash escapes.
                let mut closed = false;
                while i < chars.len() {
                    let d = chars[i].1;
                    i += 1;
                    if d == '\\' && c != '`' {
                        i += 1;
                    } else if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(Error::UnclosedString { quote: c, at });
                }
            }
            '(' | '[' | '{' => open.push((c, at)),
            ')' | ']' | '}' => {
                let expected = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                match open.pop() {
                    None => return Err(Error::Unopened { close: c, at }),
                    Some((o, opened)) if o != expected => {
                        return Err(Error::Mismatched {
                            open: o,
                            opened,
                            close: c,
                            at,
                        });
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
        if !c.is_whitespace() {
            empty = false;
        }
    }
    if let Some((open, at)) = open.pop() {
        return Err(Error::Unclosed { open, at });
    }
    if empty {
        return Err(Error::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: Vars<'static> = Vars {
        deployment: "sentiment",
        namespace: "ml",
        selector: r#"namespace="ml",pod=~"sentiment-[0-9]+""#,
    };

    fn err(text: &str) -> String {
        Template::parse(text)
            .expect_err("the template is wrong")
            .to_string()
    }

    #[test]
    fn variables_are_filled_in_wherever_they_are() {
        let t = Template::parse(
            r#"avg(rate(vllm:e2e_request_latency_seconds_sum{{{selector}}}[1m])) / on() group_left() max(up{job="{{ deployment }}",ns="{{namespace}}"})"#,
        )
        .expect("a valid template");
        assert_eq!(
            t.render(&VARS),
            r#"avg(rate(vllm:e2e_request_latency_seconds_sum{namespace="ml",pod=~"sentiment-[0-9]+"}[1m])) / on() group_left() max(up{job="sentiment",ns="ml"})"#
        );
    }

    #[test]
    fn unknown_and_unclosed_variables_are_named() {
        assert_eq!(
            err(r#"up{pod="{{pod}}"}"#),
            "unknown variable `{{pod}}` at column 9; use {{deployment}}, {{namespace}} or {{selector}}"
        );
        assert_eq!(
            err("up{job=\"x\"}\n  + on() up{ns=\"{{namespace\"}"),
            "`{{` at line 2, column 17 is not closed by `}}`"
        );
    }

    #[test]
    fn brackets_must_nest() {
        assert_eq!(err("sum(rate(x[1m])"), "`(` at column 4 is not closed");
        assert_eq!(err("sum(x))"), "`)` at column 7 closes nothing");
        assert_eq!(
            err("sum(rate(x[1m)))"),
            "`)` at column 14 does not close `[` at column 11"
        );
    }

    #[test]
    fn strings_and_comments_hide_brackets() {
        Template::parse(r#"up{a="(", b='[\'', c=`\`} # ) unbalanced in a comment"#)
            .expect("brackets in strings and comments do not count");
        assert_eq!(
            err(r#"up{a="x}"#),
            "the string starting with \" at column 6 is not closed"
        );
    }

    #[test]
    fn an_empty_query_is_an_error() {
        assert_eq!(err("  \n # only a comment\n"), "the query is empty");
    }
}
