//! Corefile syntax: tokens, server blocks, directives (sources.md#corefile-model).
//!
//! This module knows the grammar only: `[SCHEME://]ZONE[:PORT] ... { directive args [{ ... }] }`,
//! snippets `(name) { ... }` with `import name`, `import FILE-or-GLOB`, `{$ENV}` substitution and
//! `#` comments. What each directive means is `config`'s business. Every token keeps the file,
//! line and column it came from, so every later error can point at it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub pos: Pos,
    /// Written in quotes: never a brace, never a comment.
    pub quoted: bool,
    /// First token on its line.
    pub line_start: bool,
}

/// A configuration error: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {msg}")]
pub struct ConfigError {
    pub pos: Pos,
    pub msg: String,
}

impl ConfigError {
    pub fn at(pos: &Pos, msg: impl Into<String>) -> Self {
        ConfigError { pos: pos.clone(), msg: msg.into() }
    }
}

/// A directive line: `name args... [{ sub-directives }]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    pub block: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    pub keys: Vec<Token>,
    pub directives: Vec<Directive>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Corefile {
    pub blocks: Vec<ServerBlock>,
}

/// CoreDNS caps imports at 10000 (sources.md#corefile-model).
const MAX_IMPORTS: usize = 10_000;

/// Reads and parses a Corefile from disk; imports are resolved relative to its folder.
pub fn parse_file(path: &Path) -> Result<Corefile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        pos: Pos { file: path.display().to_string().into(), line: 0, col: 0 },
        msg: format!("cannot read the Corefile: {e}"),
    })?;
    parse_str(&text, &path.display().to_string(), path.parent().map(Path::to_path_buf), &|k| std::env::var(k).ok())
}

/// Parses Corefile text. `base` is the folder for relative imports (None: imports of files fail).
pub fn parse_str(text: &str, file: &str, base: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> Result<Corefile, ConfigError> {
    let file: Arc<str> = file.into();
    let tokens = lex(text, &file, env)?;
    let mut p = Parser { snippets: Vec::new(), base, env, imports: 0 };
    p.parse_top(tokens)
}

fn lex(text: &str, file: &Arc<str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Token>, ConfigError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let mut line_start = true;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            col = 1;
            i += 1;
            line_start = true;
            continue;
        }
        if c.is_whitespace() || c == ',' {
            i += 1;
            col += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let pos = Pos { file: file.clone(), line, col };
        let mut text = String::new();
        let quoted = c == '"';
        if quoted {
            i += 1;
            col += 1;
            loop {
                let Some(&c) = chars.get(i) else {
                    return Err(ConfigError::at(&pos, "unterminated quoted string; expected a closing '\"'"));
                };
                i += 1;
                col += 1;
                match c {
                    '"' => break,
                    '\\' if matches!(chars.get(i), Some('"') | Some('\\')) => {
                        text.push(chars[i]);
                        i += 1;
                        col += 1;
                    }
                    '\n' => {
                        text.push('\n');
                        line += 1;
                        col = 1;
                    }
                    c => text.push(c),
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ',' {
                // `{$VAR}` inside a token is substitution, not a brace.
                if chars[i] == '{' && chars.get(i + 1) == Some(&'$') {
                    let close = chars[i..].iter().position(|&c| c == '}').map(|p| p + i);
                    let Some(close) = close else {
                        return Err(ConfigError::at(&pos, "unterminated environment reference; expected '}' after '{$NAME'"));
                    };
                    let name: String = chars[i + 2..close].iter().collect();
                    text.push_str(&env(&name).unwrap_or_default());
                    col += (close + 1 - i) as u32;
                    i = close + 1;
                    continue;
                }
                text.push(chars[i]);
                i += 1;
                col += 1;
            }
        }
        out.push(Token { text, pos, quoted, line_start });
        line_start = false;
    }
    Ok(out)
}

struct Parser<'a> {
    snippets: Vec<(String, Vec<Token>)>,
    base: Option<PathBuf>,
    env: &'a dyn Fn(&str) -> Option<String>,
    imports: usize,
}

fn is_open(t: &Token) -> bool {
    !t.quoted && t.text == "{"
}
fn is_close(t: &Token) -> bool {
    !t.quoted && t.text == "}"
}

impl Parser<'_> {
    fn parse_top(&mut self, mut tokens: Vec<Token>) -> Result<Corefile, ConfigError> {
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            // Snippet definition: `(name) { ... }`.
            if !t.quoted && t.text.starts_with('(') && t.text.ends_with(')') && t.text.len() > 2 {
                let name = t.text[1..t.text.len() - 1].to_string();
                let open = tokens.get(i + 1).filter(|o| is_open(o));
                if open.is_none() {
                    return Err(ConfigError::at(&t.pos, format!("snippet ({name}) must be followed by '{{'")));
                }
                let (body, next) = take_braced(&tokens, i + 1)?;
                self.snippets.push((name, body));
                i = next;
                continue;
            }
            // A top-level import brings in whole server blocks (AKS's `import custom/*.server`, k3s's
            // `import /etc/coredns/custom/*.server`); a glob that matches nothing brings in nothing.
            if !t.quoted && t.text == "import" {
                let Some(arg) = tokens.get(i + 1).filter(|a| a.pos.line == t.pos.line).cloned() else {
                    return Err(ConfigError::at(&t.pos, "import needs an argument: a snippet name or a file"));
                };
                self.imports += 1;
                if self.imports > MAX_IMPORTS {
                    return Err(ConfigError::at(&t.pos, "too many imports (an import cycle?)"));
                }
                let body = match self.snippets.iter().find(|(n, _)| *n == arg.text) {
                    Some((_, body)) => body.clone(),
                    None => self.import_files(&arg)?,
                };
                tokens.splice(i..i + 2, body);
                continue;
            }
            if is_open(t) || is_close(t) {
                return Err(ConfigError::at(&t.pos, format!("unexpected '{}'; expected a server block key such as `.:53`", t.text)));
            }
            // Server block keys up to the opening brace.
            let mut keys = Vec::new();
            while i < tokens.len() && !is_open(&tokens[i]) {
                if is_close(&tokens[i]) {
                    return Err(ConfigError::at(&tokens[i].pos, "unexpected '}'; expected '{' after the server block keys"));
                }
                keys.push(tokens[i].clone());
                i += 1;
            }
            if i >= tokens.len() {
                let last = keys.last().map(|k| k.pos.clone()).unwrap_or_else(|| t.pos.clone());
                return Err(ConfigError::at(&last, "server block has no body; expected '{' after its keys"));
            }
            let (body, next) = take_braced(&tokens, i)?;
            i = next;
            let body = self.expand_imports(body, 0)?;
            let directives = parse_directives(&body)?;
            blocks.push(ServerBlock { keys, directives });
        }
        Ok(Corefile { blocks })
    }

    /// Replaces `import X` lines by the snippet's tokens or the imported files' tokens.
    fn expand_imports(&mut self, tokens: Vec<Token>, depth: usize) -> Result<Vec<Token>, ConfigError> {
        let mut out = Vec::with_capacity(tokens.len());
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            if t.line_start && !t.quoted && t.text == "import" {
                let Some(arg) = tokens.get(i + 1).filter(|a| a.pos.line == t.pos.line) else {
                    return Err(ConfigError::at(&t.pos, "import needs an argument: a snippet name or a file"));
                };
                self.imports += 1;
                if self.imports > MAX_IMPORTS || depth > 32 {
                    return Err(ConfigError::at(&t.pos, "too many imports (an import cycle?)"));
                }
                let body = if let Some((_, body)) = self.snippets.iter().find(|(n, _)| *n == arg.text) {
                    body.clone()
                } else {
                    self.import_files(arg)?
                };
                let mut expanded = self.expand_imports(body, depth + 1)?;
                // The imported first token starts a line.
                if let Some(first) = expanded.first_mut() {
                    first.line_start = true;
                }
                out.extend(expanded);
                i += 2;
                continue;
            }
            out.push(t.clone());
            i += 1;
        }
        Ok(out)
    }

    fn import_files(&mut self, arg: &Token) -> Result<Vec<Token>, ConfigError> {
        let Some(base) = &self.base else {
            return Err(ConfigError::at(&arg.pos, format!("no snippet named '{}' is defined before this import", arg.text)));
        };
        let path = base.join(&arg.text);
        let paths: Vec<PathBuf> = if arg.text.contains('*') {
            glob_files(&path)
        } else if path.exists() {
            vec![path]
        } else {
            return Err(ConfigError::at(
                &arg.pos,
                format!("import '{}': no snippet of that name and no file {}", arg.text, path.display()),
            ));
        };
        let mut out = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| ConfigError::at(&arg.pos, format!("import {}: {e}", p.display())))?;
            let file: Arc<str> = p.display().to_string().into();
            out.extend(lex(&text, &file, self.env)?);
        }
        Ok(out)
    }
}

/// Matches a `*` glob in the last path component only, sorted for determinism.
fn glob_files(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let (pre, post) = name.split_once('*').unwrap_or((name, ""));
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len())
        })
        .collect();
    out.sort();
    out
}

/// From an opening brace at `open`, returns the tokens inside and the index after the closing brace.
fn take_braced(tokens: &[Token], open: usize) -> Result<(Vec<Token>, usize), ConfigError> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
            if depth == 0 {
                return Ok((tokens[open + 1..j].to_vec(), j + 1));
            }
        }
    }
    Err(ConfigError::at(&tokens[open].pos, "unclosed '{'; expected a matching '}'"))
}

/// Splits a block body into directive lines; a line ending in `{` owns a nested block.
fn parse_directives(tokens: &[Token]) -> Result<Vec<Directive>, ConfigError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let name = tokens[i].clone();
        if is_open(&name) || is_close(&name) {
            return Err(ConfigError::at(&name.pos, format!("unexpected '{}'; expected a directive name", name.text)));
        }
        i += 1;
        let mut args = Vec::new();
        while i < tokens.len() && !tokens[i].line_start && !is_open(&tokens[i]) {
            if is_close(&tokens[i]) {
                return Err(ConfigError::at(&tokens[i].pos, "unexpected '}'"));
            }
            args.push(tokens[i].clone());
            i += 1;
        }
        let mut block = Vec::new();
        if i < tokens.len() && is_open(&tokens[i]) {
            let (body, next) = take_braced(tokens, i)?;
            // Tokens after '{' on the same line start sub-directives.
            let mut body = body;
            if let Some(first) = body.first_mut() {
                first.line_start = true;
            }
            block = parse_directives(&body)?;
            i = next;
        }
        out.push(Directive { name, args, block });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Corefile, ConfigError> {
        parse_str(text, "Corefile", None, &|k| (k == "UPSTREAM").then(|| "10.0.0.2".to_string()))
    }

    #[test]
    fn parses_the_kubeadm_default() {
        let cf = parse(
            ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30 {\n       disable success cluster.local\n    }\n    loop\n    reload\n    loadbalance\n}\n",
        )
        .expect("parses");
        assert_eq!(cf.blocks.len(), 1);
        let b = &cf.blocks[0];
        assert_eq!(b.keys[0].text, ".:53");
        let names: Vec<_> = b.directives.iter().map(|d| d.name.text.as_str()).collect();
        assert_eq!(names, ["errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop", "reload", "loadbalance"]);
        let k = &b.directives[3];
        assert_eq!(k.args.len(), 3);
        assert_eq!(k.block[1].name.text, "fallthrough");
        assert_eq!(k.block[1].args.len(), 2);
        assert_eq!(k.block[2].name.pos.line, 10);
    }

    #[test]
    fn snippets_env_and_commas() {
        let cf = parse(
            "(common) {\n errors\n cache 30\n}\nexample.org, example.net:1053 {\n import common # two lines\n forward . {$UPSTREAM}\n}\n",
        )
        .expect("parses");
        let b = &cf.blocks[0];
        assert_eq!(b.keys.len(), 2);
        assert_eq!(b.directives.len(), 3);
        assert_eq!(b.directives[2].args[1].text, "10.0.0.2");
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse(".:53 {\n  cache {\n    success 10\n").expect_err("unclosed");
        assert_eq!((e.pos.line, e.pos.col), (1, 6), "the server block brace is the first unclosed one");
        let e = parse(".:53 {\n import nothing\n}").expect_err("no snippet");
        assert_eq!(e.pos.line, 2);
        assert!(e.to_string().starts_with("Corefile:2:9:"), "{e}");
    }

    #[test]
    fn imports_files_and_globs_relative_to_the_corefile() {
        let dir = std::env::temp_dir().join(format!("ndots-import-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).expect("dir");
        std::fs::write(dir.join("conf.d/a.conf"), "errors\n").expect("write");
        std::fs::write(dir.join("conf.d/b.conf"), "cache 30\n").expect("write");
        std::fs::write(dir.join("common"), "loop\n").expect("write");
        let cf = parse_str(".:53 {\n import common\n import conf.d/*.conf\n}\n", "Corefile", Some(dir.clone()), &|_| None).expect("parses");
        let names: Vec<_> = cf.blocks[0].directives.iter().map(|d| d.name.text.as_str()).collect();
        assert_eq!(names, ["loop", "errors", "cache"]);
        assert!(cf.blocks[0].directives[2].name.pos.file.ends_with("b.conf"), "positions name the imported file");
        let e = parse_str(".:53 {\n import missing.conf\n}\n", "Corefile", Some(dir), &|_| None).expect_err("missing");
        assert_eq!(e.pos.line, 2);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_input(text in "[ -~\n\t{}]{0,300}") {
            let _ = parse_str(&text, "Corefile", None, &|_| None);
        }
    }

    #[test]
    fn a_top_level_import_brings_in_server_blocks_and_an_empty_glob_nothing() {
        let dir = std::env::temp_dir().join(format!("ndots-import-top-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("custom")).expect("dir");
        std::fs::write(dir.join("custom/a.server"), "example.org:53 {\n errors\n}\n").expect("write");
        std::fs::write(dir.join("custom/b.override"), "log\n").expect("write");
        let text = ".:53 {\n errors\n import custom/*.override\n}\nimport custom/*.server\nimport custom/*.none\n";
        let cf = parse_str(text, "Corefile", Some(dir.clone()), &|_| None).expect("parses");
        assert_eq!(cf.blocks.len(), 2);
        assert_eq!(cf.blocks[1].keys[0].text, "example.org:53");
        assert_eq!(cf.blocks[0].directives.iter().map(|d| d.name.text.as_str()).collect::<Vec<_>>(), ["errors", "log"]);
        let e = parse_str(".:53 {\n}\nimport\n", "Corefile", Some(dir), &|_| None).expect_err("no argument");
        assert_eq!(e.pos.line, 3);
    }

    #[test]
    fn same_line_block_bodies() {
        let cf = parse("in-addr.arpa:53 { errors\n cache 30 }\n").expect("parses");
        assert_eq!(cf.blocks[0].directives.len(), 2);
    }
}
