//! A template that handlebars cannot read, explained in a CX writer's words.
//!
//! Handlebars' parser reports where it gave up — for an unclosed `{{#if}}`, the end of the file —
//! and lists the grammar's token names it expected there. The writer needs the other end: which
//! block was opened and never closed, which `{{` never met its `}}`. So a template handlebars
//! refuses is scanned here for its tags, and the first mistake in their nesting is reported
//! where it was made; only a mistake this scan cannot name falls back to handlebars' position,
//! with words instead of token names.

/// One problem in a template's text: where (1-based line and column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxProblem {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub col: usize,
    /// What is wrong, for the template's writer.
    pub message: String,
}

/// Explains why handlebars refused `text` (it reported `refused` at `at`, if it knew where).
pub(super) fn explain(
    text: &str,
    refused: &handlebars::TemplateErrorReason,
    at: Option<(usize, usize)>,
) -> SyntaxProblem {
    if let Some(problem) = nesting_problem(text) {
        return problem;
    }
    use handlebars::TemplateErrorReason as R;
    let message = match refused {
        R::MismatchingClosedHelper(open, close) | R::MismatchingClosedDecorator(open, close) => {
            format!("`{{{{/{close}}}}}` closes `{{{{#{open}}}}}`: close the inner block first")
        }
        R::InvalidParam(param) => format!("`{param}` cannot be used as a helper's parameter"),
        R::NestedSubexpression => "a `(…)` inside another `(…)` is not supported".into(),
        // Handlebars lists its grammar's token names here; the writer needs the place.
        R::InvalidSyntax(_) => "handlebars cannot read the tag here: check its `{{`, `}}` and \
                                quotes"
            .into(),
        other => other.to_string(),
    };
    let (line, col) = at.unwrap_or((1, 1));
    SyntaxProblem { line, col, message }
}

/// The first mistake in how the template's `{{#block}}` … `{{/block}}` tags nest, if any.
fn nesting_problem(text: &str) -> Option<SyntaxProblem> {
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut offset = 0;
    while let Some(start) = text[offset..].find("{{") {
        let at = offset + start;
        let (line, col) = line_col(text, at);
        let problem = |message: String| Some(SyntaxProblem { line, col, message });
        let Some((inner, length)) = read_tag(&text[at..]) else {
            return problem("`{{` is never closed with `}}`".into());
        };
        offset = at + length;
        let inner = inner.trim_matches('~').trim();
        if let Some(name) = inner.strip_prefix('#') {
            let name = block_name(name.trim_start_matches(['>', '*']));
            open.push((name, line, col));
        } else if let Some(name) = inner.strip_prefix('/') {
            let name = block_name(name);
            match open.pop() {
                None => {
                    return problem(format!(
                        "`{{{{/{name}}}}}` closes a block that was never opened"
                    ))
                }
                Some((opened, l, c)) if opened != name => {
                    return problem(format!(
                        "`{{{{/{name}}}}}` cannot close `{{{{#{opened}}}}}` opened at \
                         {l}:{c}; close it with `{{{{/{opened}}}}}` first"
                    ))
                }
                Some(_) => {}
            }
        }
    }
    open.pop().map(|(name, line, col)| SyntaxProblem {
        line,
        col,
        message: format!("`{{{{#{name}}}}}` opened at {line}:{col} is never closed"),
    })
}

/// The tag at the start of `text` (which begins with `{{`): what is between its braces, and
/// how many bytes it takes, braces included. None when it never ends.
fn read_tag(text: &str) -> Option<(&str, usize)> {
    let (open, close) = delimiters(text);
    let end = text[open.len()..].find(close)?;
    Some((
        &text[open.len()..open.len() + end],
        open.len() + end + close.len(),
    ))
}

/// A tag's opening and closing: comments and triple braces end differently.
fn delimiters(text: &str) -> (&'static str, &'static str) {
    if text.starts_with("{{!--") {
        ("{{!--", "--}}")
    } else if text.starts_with("{{{{") {
        ("{{{{", "}}}}")
    } else if text.starts_with("{{{") {
        ("{{{", "}}}")
    } else {
        ("{{", "}}")
    }
}

/// The helper a block tag names: its first word.
fn block_name(tag: &str) -> String {
    tag.split_whitespace().next().unwrap_or_default().to_owned()
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> SyntaxProblem {
        let refused = handlebars::Handlebars::new()
            .register_template_string("t", text)
            .expect_err("handlebars refuses it");
        explain(text, refused.reason(), refused.pos())
    }

    #[test]
    fn an_unclosed_block_is_reported_where_it_was_opened() {
        let p = problem("Dear {{customer.name}}, {{#if data.eta}}it arrives {{data.eta}}");
        assert_eq!((p.line, p.col), (1, 25), "{p:?}");
        assert_eq!(p.message, "`{{#if}}` opened at 1:25 is never closed");
    }

    #[test]
    fn a_block_closed_by_the_wrong_name_names_both() {
        let p = problem("{{#each data.items}}\n  {{#if name}}{{name}}{{/each}}\n{{/if}}");
        assert_eq!((p.line, p.col), (2, 23), "{p:?}");
        assert!(p
            .message
            .contains("`{{/each}}` cannot close `{{#if}}` opened at 2:3"));
    }

    #[test]
    fn an_unfinished_tag_and_a_stray_close_are_named() {
        let p = problem("Hi {{customer.name}, thanks");
        assert_eq!(
            (p.line, p.col, p.message.as_str()),
            (1, 4, "`{{` is never closed with `}}`")
        );
        let p = problem("Hi {{/if}}");
        assert_eq!(p.message, "`{{/if}}` closes a block that was never opened");
    }

    #[test]
    fn no_grammar_token_names_reach_the_writer() {
        for text in [
            "{{#if}}x{{/if}}",
            "{{foo (bar (baz))}}",
            "{{a b=}}",
            "{{{x}}",
        ] {
            if handlebars::Handlebars::new()
                .register_template_string("t", text)
                .is_ok()
            {
                continue;
            }
            let p = problem(text);
            assert!(!p.message.contains("expression"), "{text}: {p:?}");
            assert!(!p.message.contains("_tag"), "{text}: {p:?}");
        }
    }
}
