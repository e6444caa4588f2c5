//! Recursive-descent parser from tokens to the selector AST.
//!
//! The grammar, loosest binding first:
//!
//! ```text
//! selector   := or EOF
//! or         := and ( OR and )*
//! and        := not ( AND not )*
//! not        := NOT not | equality
//! equality   := relational ( ( '=' | '<>' ) relational | IS [NOT] NULL )*
//! relational := additive [ ( '<' | '>' | '<=' | '>=' ) additive
//!                        | [NOT] BETWEEN additive AND additive
//!                        | [NOT] LIKE string [ ESCAPE string ]
//!                        | [NOT] IN '(' string ( ',' string )* ')' ]
//! additive   := multiplicative ( ( '+' | '-' ) multiplicative )*
//! multiplicative := unary ( ( '*' | '/' | '%' ) unary )*
//! unary      := ( '+' | '-' ) unary | primary
//! primary    := literal | identifier | '(' or ')'
//! ```
//!
//! `=`/`<>` bind more loosely than `<`/`>`/`BETWEEN`/`LIKE`/`IN`, as in ActiveMQ, so
//! `x > 5 = TRUE` means `(x > 5) = TRUE`. Equality chains associate to the left
//! (`a = b = TRUE` is `(a = b) = TRUE`), while ordering, BETWEEN, LIKE and IN do not chain
//! (`a < b < c` is refused; ActiveMQ refuses it too, as a boolean compared with `<`).
//! AND, OR and arithmetic chains are flattened into vectors, so a long
//! `a = 1 OR a = 2 OR …` list does not make the tree (or the evaluator's recursion) deep;
//! only parentheses, `NOT`, unary signs and equality chains nest, and together they are
//! limited to [`MAX_DEPTH`] levels. At that limit, parsing and
//! evaluating the costliest selectors use about 128 KiB of stack in a release build and
//! 512 KiB in a debug build (see the `worst_case_nesting_fits_in_a_small_stack` test).
//!
//! Like ActiveMQ, the parser rejects some expressions whose type is wrong on sight:
//! a number or string where a boolean is required (`a + 1`, `'x' AND b`), a string,
//! boolean or NULL literal next to `<`/`>`/`BETWEEN`, `= NULL` (which is never true;
//! `IS NULL` is meant), a boolean compared with a number, and `IN` after anything but an
//! identifier.

use super::lexer::{Keyword, Token, TokenKind, tokenize};
use super::like::LikePattern;
use super::{MAX_DEPTH, MAX_LENGTH, SelectorError};

/// A literal value in the selector text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(String),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A binary arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A parsed selector expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    /// A message property (or JMS header) looked up by name.
    Ident(String),
    Not(Box<Expr>),
    /// Two or more operands.
    And(Vec<Expr>),
    /// Two or more operands.
    Or(Vec<Expr>),
    Compare {
        op: CmpOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Between {
        negated: bool,
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    Like {
        negated: bool,
        value: Box<Expr>,
        pattern: LikePattern,
    },
    In {
        negated: bool,
        ident: String,
        list: Vec<String>,
    },
    IsNull {
        negated: bool,
        value: Box<Expr>,
    },
    /// Unary minus.
    Neg(Box<Expr>),
    /// Unary plus: converts its operand to a number.
    Pos(Box<Expr>),
    /// `first op1 e1 op2 e2 …`, evaluated left to right.
    Arith {
        first: Box<Expr>,
        rest: Vec<(ArithOp, Expr)>,
    },
}

/// What an expression is known to produce before any message is seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StaticType {
    Bool,
    Num,
    Str,
    Null,
    /// A property, which may hold anything.
    Any,
}

impl StaticType {
    /// The static type of `expr`, from its top node alone.
    fn of(expr: &Expr) -> StaticType {
        match expr {
            Expr::Literal(Literal::Null) => StaticType::Null,
            Expr::Literal(Literal::Bool(_)) => StaticType::Bool,
            Expr::Literal(Literal::Long(_) | Literal::Double(_)) => StaticType::Num,
            Expr::Literal(Literal::Str(_)) => StaticType::Str,
            Expr::Ident(_) => StaticType::Any,
            Expr::Neg(_) | Expr::Pos(_) | Expr::Arith { .. } => StaticType::Num,
            Expr::Not(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Compare { .. }
            | Expr::Between { .. }
            | Expr::Like { .. }
            | Expr::In { .. }
            | Expr::IsNull { .. } => StaticType::Bool,
        }
    }

    /// The type as a noun phrase, for error messages.
    fn noun(self) -> &'static str {
        match self {
            StaticType::Bool => "a boolean",
            StaticType::Num => "a number",
            StaticType::Str => "a string",
            StaticType::Null => "NULL",
            StaticType::Any => "a property",
        }
    }
}

/// Parses selector text into an expression.
pub(crate) fn parse(src: &str) -> Result<Expr, SelectorError> {
    if src.len() > MAX_LENGTH {
        // Report the limit itself, moved back to a character boundary so that the offset
        // can always be used to slice the text.
        let offset = (0..=MAX_LENGTH)
            .rev()
            .find(|&i| src.is_char_boundary(i))
            .unwrap_or(0);
        return Err(SelectorError {
            offset,
            message: format!("selector is longer than {MAX_LENGTH} bytes"),
        });
    }
    let tokens = tokenize(src)?;
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
    };
    if parser.peek().kind == TokenKind::Eof {
        return fail(0, "empty selector");
    }
    let start = parser.peek().start;
    let expr = parser.or()?;
    expect_boolean(&expr, start)?;
    let token = parser.peek();
    match token.kind {
        TokenKind::Eof => Ok(*expr),
        TokenKind::RParen => fail(token.start, "unbalanced ')'"),
        TokenKind::Lt
        | TokenKind::Le
        | TokenKind::Gt
        | TokenKind::Ge
        | TokenKind::Keyword(Keyword::Between | Keyword::Like | Keyword::In) => fail(
            token.start,
            "comparisons cannot be chained; use parentheses",
        ),
        _ => Err(SelectorError {
            offset: token.start,
            message: format!(
                "unexpected {}; expected AND, OR or the end of the selector",
                token.describe(src)
            ),
        }),
    }
}

/// Parser state: the token list and a cursor into it.
///
/// The methods on the recursive path (`or` down to `primary`) have a frame on the stack
/// for every level of parentheses, so they are kept lean: they pass subtrees around as
/// `Box<Expr>` rather than by value, error messages are built in cold, out-of-line
/// functions, and forms that do not recurse (LIKE, IN, literals) are parsed out of line.
/// Chains of `NOT` and of unary signs are collected in loops instead of by recursion.
struct Parser<'s> {
    src: &'s str,
    /// Always ends with an EOF token, which the cursor never moves past.
    tokens: Vec<Token>,
    pos: usize,
    /// Current nesting of parentheses, `NOT`, unary signs and equality chains.
    depth: usize,
}

type PResult<T> = Result<T, SelectorError>;

/// An error with a fixed message.
#[cold]
#[inline(never)]
fn fail<T>(offset: usize, message: &'static str) -> PResult<T> {
    Err(SelectorError {
        offset,
        message: message.to_owned(),
    })
}

/// Why an operand was refused on sight.
#[derive(Clone, Copy, Debug)]
enum Misuse {
    /// A non-boolean where a boolean is required.
    NotBoolean(StaticType),
    /// A non-number next to `<`, `>`, `<=`, `>=` or BETWEEN (the operator as written).
    NotOrderable(StaticType, &'static str),
    /// A NULL literal next to `=` (false) or `<>` (true).
    NullEquality(bool),
    /// A boolean compared with a number.
    BoolWithNumber,
}

/// The error for a misused operand at `offset`.
#[cold]
#[inline(never)]
fn misuse<T>(offset: usize, misuse: Misuse) -> PResult<T> {
    let message = match misuse {
        Misuse::NotBoolean(ty) => format!("expected a boolean expression, found {}", ty.noun()),
        Misuse::NotOrderable(StaticType::Null, what) => {
            format!("NULL cannot be used with {what}; use IS NULL")
        }
        Misuse::NotOrderable(ty, what) => {
            format!("{} cannot be used with {what}; only numbers can", ty.noun())
        }
        Misuse::NullEquality(not_equal) => {
            let (op, not) = if not_equal { ("<>", "NOT ") } else { ("=", "") };
            format!("NULL cannot be compared with '{op}'; use IS {not}NULL")
        }
        Misuse::BoolWithNumber => "a boolean cannot be compared with a number".to_owned(),
    };
    Err(SelectorError { offset, message })
}

/// Fails unless `expr` (starting at `offset`) can produce a boolean.
fn expect_boolean(expr: &Expr, offset: usize) -> PResult<()> {
    match StaticType::of(expr) {
        StaticType::Bool | StaticType::Null | StaticType::Any => Ok(()),
        other => misuse(offset, Misuse::NotBoolean(other)),
    }
}

/// Fails if `expr` (starting at `offset`) can never be ordered by `what`.
fn expect_orderable(expr: &Expr, offset: usize, what: &'static str) -> PResult<()> {
    match StaticType::of(expr) {
        StaticType::Num | StaticType::Any => Ok(()),
        other => misuse(offset, Misuse::NotOrderable(other, what)),
    }
}

impl Parser<'_> {
    /// The current token.
    fn peek(&self) -> &Token {
        // The cursor never passes the final EOF token (see `bump`), so the index is valid
        // whenever the list is non-empty, which `tokenize` guarantees.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    /// The kind of the token after the current one (EOF at the end).
    fn peek2(&self) -> &TokenKind {
        &self.tokens[(self.pos + 1).min(self.tokens.len() - 1)].kind
    }

    /// Moves to the next token, stopping at EOF, and returns where the skipped token
    /// started.
    fn bump(&mut self) -> usize {
        let token = self.peek();
        let start = token.start;
        if token.kind != TokenKind::Eof {
            self.pos += 1;
        }
        start
    }

    fn at_keyword(&self, kw: Keyword) -> bool {
        self.peek().kind == TokenKind::Keyword(kw)
    }

    /// Consumes the keyword `kw` if it is next.
    fn eat_keyword(&mut self, kw: Keyword) -> bool {
        let found = self.at_keyword(kw);
        if found {
            self.bump();
        }
        found
    }

    /// An error at the current token: "expected `what`, found `token`".
    #[cold]
    #[inline(never)]
    fn expected<T>(&self, what: &'static str) -> PResult<T> {
        let token = self.peek();
        Err(SelectorError {
            offset: token.start,
            message: format!("expected {what}, found {}", token.describe(self.src)),
        })
    }

    /// Consumes a token of exactly `kind`, or fails with "expected `what`".
    fn expect(&mut self, kind: &TokenKind, what: &'static str) -> PResult<()> {
        if &self.peek().kind == kind {
            self.bump();
            Ok(())
        } else {
            self.expected(what)
        }
    }

    /// Consumes a string literal and returns its value and start offset.
    fn expect_string(&mut self, what: &'static str) -> PResult<(String, usize)> {
        let TokenKind::Str(value) = &self.peek().kind else {
            return self.expected(what);
        };
        let value = value.clone();
        Ok((value, self.bump()))
    }

    /// Enters one level of nesting that starts at `offset`.
    fn enter(&mut self, offset: usize) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.too_deep(offset);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self, offset: usize) -> PResult<()> {
        Err(SelectorError {
            offset,
            message: format!("selector is nested deeper than {MAX_DEPTH} levels"),
        })
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn or(&mut self) -> PResult<Box<Expr>> {
        let start = self.peek().start;
        let first = self.and()?;
        if !self.at_keyword(Keyword::Or) {
            return Ok(first);
        }
        expect_boolean(&first, start)?;
        let mut items = vec![*first];
        while self.eat_keyword(Keyword::Or) {
            let start = self.peek().start;
            let item = self.and()?;
            expect_boolean(&item, start)?;
            items.push(*item);
        }
        Ok(Box::new(Expr::Or(items)))
    }

    fn and(&mut self) -> PResult<Box<Expr>> {
        let start = self.peek().start;
        let first = self.not()?;
        if !self.at_keyword(Keyword::And) {
            return Ok(first);
        }
        expect_boolean(&first, start)?;
        let mut items = vec![*first];
        while self.eat_keyword(Keyword::And) {
            let start = self.peek().start;
            let item = self.not()?;
            expect_boolean(&item, start)?;
            items.push(*item);
        }
        Ok(Box::new(Expr::And(items)))
    }

    /// `NOT NOT … operand`, with the `NOT`s counted in a loop rather than by recursion.
    fn not(&mut self) -> PResult<Box<Expr>> {
        let mut nots = 0;
        while self.at_keyword(Keyword::Not) {
            let not_start = self.bump();
            self.enter(not_start)?;
            nots += 1;
        }
        let start = self.peek().start;
        let mut expr = self.equality()?;
        if nots > 0 {
            expect_boolean(&expr, start)?;
        }
        for _ in 0..nots {
            expr = Box::new(Expr::Not(expr));
            self.leave();
        }
        Ok(expr)
    }

    fn equality(&mut self) -> PResult<Box<Expr>> {
        let start = self.peek().start;
        let mut expr = self.relational()?;
        // `a = b = c` means `(a = b) = c`, as in ActiveMQ. Each link after the first nests
        // the tree one level deeper, so it counts towards the depth limit.
        let mut links = 0;
        loop {
            let op = match self.peek().kind {
                TokenKind::Eq => Some(CmpOp::Eq),
                TokenKind::Ne => Some(CmpOp::Ne),
                TokenKind::Keyword(Keyword::Is) => None,
                _ => break,
            };
            if links > 0 {
                self.enter(self.peek().start)?;
            }
            links += 1;
            let Some(op) = op else {
                expr = self.is_null(expr)?;
                continue;
            };
            let op_start = self.bump();
            let rhs_start = self.peek().start;
            let rhs = self.relational()?;
            check_equality(op, &expr, start, &rhs, rhs_start, op_start)?;
            expr = Box::new(Expr::Compare { op, lhs: expr, rhs });
        }
        for _ in 1..links {
            self.leave();
        }
        Ok(expr)
    }

    /// The rest of `value IS [NOT] NULL`, at `IS`.
    #[inline(never)]
    fn is_null(&mut self, value: Box<Expr>) -> PResult<Box<Expr>> {
        self.bump();
        let negated = self.eat_keyword(Keyword::Not);
        if !self.eat_keyword(Keyword::Null) {
            return self.expected(if negated {
                "NULL after IS NOT"
            } else {
                "NULL or NOT NULL after IS"
            });
        }
        Ok(Box::new(Expr::IsNull { negated, value }))
    }

    fn relational(&mut self) -> PResult<Box<Expr>> {
        let lhs_start = self.peek().start;
        let lhs = self.additive()?;
        let negated = self.at_keyword(Keyword::Not)
            && matches!(
                self.peek2(),
                TokenKind::Keyword(Keyword::Between | Keyword::Like | Keyword::In)
            );
        if negated {
            self.bump();
        }
        let (op, what) = match self.peek().kind {
            TokenKind::Lt => (CmpOp::Lt, "'<'"),
            TokenKind::Le => (CmpOp::Le, "'<='"),
            TokenKind::Gt => (CmpOp::Gt, "'>'"),
            TokenKind::Ge => (CmpOp::Ge, "'>='"),
            TokenKind::Keyword(Keyword::Between) => {
                return self.between(negated, lhs, lhs_start);
            }
            TokenKind::Keyword(Keyword::Like) => return self.like(negated, lhs),
            TokenKind::Keyword(Keyword::In) => return self.in_list(negated, *lhs, lhs_start),
            _ => return Ok(lhs),
        };
        self.bump();
        let rhs_start = self.peek().start;
        let rhs = self.additive()?;
        expect_orderable(&lhs, lhs_start, what)?;
        expect_orderable(&rhs, rhs_start, what)?;
        Ok(Box::new(Expr::Compare { op, lhs, rhs }))
    }

    /// The rest of `value [NOT] BETWEEN low AND high`, at `BETWEEN`.
    fn between(
        &mut self,
        negated: bool,
        value: Box<Expr>,
        value_start: usize,
    ) -> PResult<Box<Expr>> {
        self.bump();
        let low_start = self.peek().start;
        let low = self.additive()?;
        if !self.eat_keyword(Keyword::And) {
            return self.expected("AND in BETWEEN");
        }
        let high_start = self.peek().start;
        let high = self.additive()?;
        expect_orderable(&value, value_start, "BETWEEN")?;
        expect_orderable(&low, low_start, "BETWEEN")?;
        expect_orderable(&high, high_start, "BETWEEN")?;
        Ok(Box::new(Expr::Between {
            negated,
            value,
            low,
            high,
        }))
    }

    /// The rest of `value [NOT] LIKE 'pattern' [ESCAPE 'c']`, at `LIKE`.
    #[inline(never)]
    fn like(&mut self, negated: bool, value: Box<Expr>) -> PResult<Box<Expr>> {
        self.bump();
        let (pattern, _) = self.expect_string("a string literal after LIKE")?;
        let escape = if self.eat_keyword(Keyword::Escape) {
            let (text, start) = self.expect_string("a string literal after ESCAPE")?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => return fail(start, "ESCAPE must be a single character"),
            }
        } else {
            None
        };
        Ok(Box::new(Expr::Like {
            negated,
            value,
            pattern: LikePattern::new(&pattern, escape),
        }))
    }

    /// The rest of `ident [NOT] IN ('a', …)`, at `IN`.
    #[inline(never)]
    fn in_list(&mut self, negated: bool, value: Expr, value_start: usize) -> PResult<Box<Expr>> {
        let Expr::Ident(ident) = value else {
            return fail(value_start, "IN needs an identifier on its left");
        };
        self.bump();
        self.expect(&TokenKind::LParen, "'(' after IN")?;
        let mut list = vec![self.expect_string("a string literal in the IN list")?.0];
        while self.peek().kind == TokenKind::Comma {
            self.bump();
            list.push(self.expect_string("a string literal in the IN list")?.0);
        }
        self.expect(&TokenKind::RParen, "')' or ',' in the IN list")?;
        Ok(Box::new(Expr::In {
            negated,
            ident,
            list,
        }))
    }

    fn additive(&mut self) -> PResult<Box<Expr>> {
        let first = self.multiplicative()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().kind {
                TokenKind::Plus => ArithOp::Add,
                TokenKind::Minus => ArithOp::Sub,
                _ => break,
            };
            self.bump();
            rest.push((op, *self.multiplicative()?));
        }
        Ok(arith(first, rest))
    }

    fn multiplicative(&mut self) -> PResult<Box<Expr>> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().kind {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                TokenKind::Percent => ArithOp::Rem,
                _ => break,
            };
            self.bump();
            rest.push((op, *self.unary()?));
        }
        Ok(arith(first, rest))
    }

    /// `- + - … operand`, with the signs collected in a loop rather than by recursion.
    fn unary(&mut self) -> PResult<Box<Expr>> {
        // Whether each sign, outermost first, is a minus.
        let mut signs = Vec::new();
        loop {
            let negate = match self.peek().kind {
                TokenKind::Minus => true,
                TokenKind::Plus => false,
                _ => break,
            };
            let sign_start = self.bump();
            self.enter(sign_start)?;
            signs.push(negate);
        }
        let mut expr = match signs.last() {
            None => return self.primary(),
            Some(&negate) => match self.signed_literal(negate)? {
                Some(literal) => {
                    // The innermost sign is part of the literal.
                    signs.pop();
                    self.leave();
                    literal
                }
                None => self.primary()?,
            },
        };
        while let Some(negate) = signs.pop() {
            expr = Box::new(if negate {
                Expr::Neg(expr)
            } else {
                Expr::Pos(expr)
            });
            self.leave();
        }
        Ok(expr)
    }

    /// After a sign: when a numeric literal follows, consumes it and returns the signed
    /// literal. This is the only way to write -9223372036854775808, whose magnitude
    /// exceeds `i64::MAX`.
    #[inline(never)]
    fn signed_literal(&mut self, negate: bool) -> PResult<Option<Box<Expr>>> {
        let literal = match self.peek().kind {
            TokenKind::Int(magnitude) => {
                let value = if !negate {
                    i64::try_from(magnitude).ok()
                } else if magnitude == 1 << 63 {
                    Some(i64::MIN)
                } else {
                    i64::try_from(magnitude).ok().map(|v| -v)
                };
                match value {
                    Some(v) => Literal::Long(v),
                    None => return fail(self.peek().start, "integer literal out of range"),
                }
            }
            TokenKind::Float(f) => Literal::Double(if negate { -f } else { f }),
            _ => return Ok(None),
        };
        self.bump();
        Ok(Some(Box::new(Expr::Literal(literal))))
    }

    fn primary(&mut self) -> PResult<Box<Expr>> {
        if self.peek().kind != TokenKind::LParen {
            let atom = self.atom()?;
            self.bump();
            return Ok(atom);
        }
        let start = self.bump();
        self.enter(start)?;
        let inner = self.or()?;
        if self.peek().kind != TokenKind::RParen {
            return self.expected("')'");
        }
        self.bump();
        self.leave();
        Ok(inner)
    }

    /// The literal or identifier at the current token, without consuming it.
    #[inline(never)]
    fn atom(&self) -> PResult<Box<Expr>> {
        let token = self.peek();
        let literal = match &token.kind {
            TokenKind::Int(magnitude) => match i64::try_from(*magnitude) {
                Ok(v) => Literal::Long(v),
                Err(_) => return fail(token.start, "integer literal out of range"),
            },
            TokenKind::Float(f) => Literal::Double(*f),
            TokenKind::Str(s) => Literal::Str(s.clone()),
            TokenKind::Keyword(Keyword::True) => Literal::Bool(true),
            TokenKind::Keyword(Keyword::False) => Literal::Bool(false),
            TokenKind::Keyword(Keyword::Null) => Literal::Null,
            TokenKind::Ident => {
                let name = self.src[token.start..token.end].to_owned();
                return Ok(Box::new(Expr::Ident(name)));
            }
            TokenKind::Keyword(Keyword::XPath | Keyword::XQuery) => {
                return fail(token.start, "XPATH and XQUERY selectors are not supported");
            }
            TokenKind::Eof => {
                return fail(
                    token.start,
                    "unexpected end of selector; expected an expression",
                );
            }
            _ => return self.expected("an expression"),
        };
        Ok(Box::new(Expr::Literal(literal)))
    }
}

/// The parse-time checks on `lhs op rhs` for `=` and `<>`.
fn check_equality(
    op: CmpOp,
    lhs: &Expr,
    lhs_start: usize,
    rhs: &Expr,
    rhs_start: usize,
    op_start: usize,
) -> PResult<()> {
    let (lt, rt) = (StaticType::of(lhs), StaticType::of(rhs));
    let not_equal = op == CmpOp::Ne;
    if lt == StaticType::Null {
        return misuse(lhs_start, Misuse::NullEquality(not_equal));
    }
    if rt == StaticType::Null {
        return misuse(rhs_start, Misuse::NullEquality(not_equal));
    }
    if matches!(
        (lt, rt),
        (StaticType::Bool, StaticType::Num) | (StaticType::Num, StaticType::Bool)
    ) {
        return misuse(op_start, Misuse::BoolWithNumber);
    }
    Ok(())
}

/// Builds an arithmetic chain, or returns `first` alone when there is no operator.
fn arith(first: Box<Expr>, rest: Vec<(ArithOp, Expr)>) -> Box<Expr> {
    if rest.is_empty() {
        first
    } else {
        Box::new(Expr::Arith { first, rest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Expr {
        parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    fn ident(name: &str) -> Box<Expr> {
        Box::new(Expr::Ident(name.to_owned()))
    }

    fn long(v: i64) -> Box<Expr> {
        Box::new(Expr::Literal(Literal::Long(v)))
    }

    fn cmp(op: CmpOp, lhs: Box<Expr>, rhs: Box<Expr>) -> Expr {
        Expr::Compare { op, lhs, rhs }
    }

    #[test]
    fn precedence_of_logic_operators() {
        // OR < AND < NOT < comparison.
        let expected = Expr::Or(vec![
            cmp(CmpOp::Eq, ident("a"), long(1)),
            Expr::And(vec![
                Expr::Not(Box::new(cmp(CmpOp::Eq, ident("b"), long(2)))),
                cmp(CmpOp::Eq, ident("c"), long(3)),
            ]),
        ]);
        assert_eq!(ok("a = 1 OR NOT b = 2 AND c = 3"), expected);
        assert_eq!(ok("(a = 1) or ((not (b = 2)) and (c = 3))"), expected);
    }

    #[test]
    fn chains_are_flattened() {
        match ok("a = 1 OR a = 2 OR a = 3 OR a = 4") {
            Expr::Or(items) => assert_eq!(items.len(), 4),
            other => panic!("{other:?}"),
        }
        match ok("x = 1 + 2 - 3 + 4") {
            Expr::Compare { rhs, .. } => match *rhs {
                Expr::Arith { rest, .. } => assert_eq!(rest.len(), 3),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arithmetic_precedence() {
        // 1 + 2 * -3 parses as 1 + (2 * (-3)).
        let expected = cmp(
            CmpOp::Eq,
            ident("x"),
            Box::new(Expr::Arith {
                first: long(1),
                rest: vec![(
                    ArithOp::Add,
                    Expr::Arith {
                        first: long(2),
                        rest: vec![(ArithOp::Mul, Expr::Literal(Literal::Long(-3)))],
                    },
                )],
            }),
        );
        assert_eq!(ok("x = 1 + 2 * -3"), expected);
    }

    #[test]
    fn equality_binds_looser_than_ordering() {
        assert_eq!(
            ok("x > 5 = TRUE"),
            cmp(
                CmpOp::Eq,
                Box::new(cmp(CmpOp::Gt, ident("x"), long(5))),
                Box::new(Expr::Literal(Literal::Bool(true)))
            )
        );
    }

    #[test]
    fn negative_literals_fold() {
        assert_eq!(
            ok("x = -9223372036854775808"),
            cmp(CmpOp::Eq, ident("x"), long(i64::MIN))
        );
        assert_eq!(ok("x = +7"), cmp(CmpOp::Eq, ident("x"), long(7)));
        assert_eq!(
            ok("x = - -7"),
            cmp(CmpOp::Eq, ident("x"), Box::new(Expr::Neg(long(-7))))
        );
        assert_eq!(
            ok("x = -y"),
            cmp(CmpOp::Eq, ident("x"), Box::new(Expr::Neg(ident("y"))))
        );
    }

    #[test]
    fn in_like_between_shapes() {
        assert_eq!(
            ok("c NOT IN ('a', 'b''c')"),
            Expr::In {
                negated: true,
                ident: "c".into(),
                list: vec!["a".into(), "b'c".into()]
            }
        );
        assert!(matches!(
            ok("c not like 'a%' escape '!'"),
            Expr::Like { negated: true, .. }
        ));
        assert_eq!(
            ok("p BETWEEN 1 AND 2 AND q"),
            Expr::And(vec![
                Expr::Between {
                    negated: false,
                    value: ident("p"),
                    low: long(1),
                    high: long(2)
                },
                Expr::Ident("q".into())
            ])
        );
        assert_eq!(
            ok("p IS NOT NULL"),
            Expr::IsNull {
                negated: true,
                value: ident("p")
            }
        );
    }

    #[test]
    fn depth_limit() {
        let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(e.offset, MAX_DEPTH);
        assert!(e.message.contains("nested deeper than 64"), "{e}");

        let nots = |n: usize| format!("{}a", "NOT ".repeat(n));
        assert!(parse(&nots(MAX_DEPTH)).is_ok());
        assert_eq!(
            parse(&nots(MAX_DEPTH + 1)).unwrap_err().offset,
            4 * MAX_DEPTH
        );

        let signs = |n: usize| format!("a = {}b", "- ".repeat(n));
        assert!(parse(&signs(MAX_DEPTH)).is_ok());
        assert!(parse(&signs(MAX_DEPTH + 1)).is_err());

        // The three kinds of nesting add up.
        let mixed = format!(
            "{}{}- b = 1{}",
            "(".repeat(30),
            "NOT ".repeat(30),
            ")".repeat(30)
        );
        assert!(parse(&mixed).is_ok());
        let mixed = format!(
            "{}{}- - - - - b = 1{}",
            "(".repeat(30),
            "NOT ".repeat(30),
            ")".repeat(30)
        );
        assert!(parse(&mixed).is_err());

        // Equality chains count one level per extra link.
        let chain = |n: usize| format!("a{}", " = TRUE".repeat(n));
        assert!(parse(&chain(MAX_DEPTH + 1)).is_ok());
        assert!(parse(&chain(MAX_DEPTH + 2)).is_err());
        let chain = |n: usize| format!("a{}", " IS NULL = TRUE".repeat(n));
        assert!(parse(&chain(MAX_DEPTH / 2)).is_ok());
        assert!(parse(&chain(MAX_DEPTH / 2 + 1)).is_err());
        // Leaving nested levels restores the budget for what follows.
        let siblings = format!("{} AND {}", chain(MAX_DEPTH / 2), chain(MAX_DEPTH / 2));
        assert!(parse(&siblings).is_ok());

        // Very deep input fails cleanly rather than overflowing the stack.
        assert!(parse(&"(".repeat(4000)).is_err());
    }

    #[test]
    fn length_limit() {
        let long_ok = format!("a = '{}'", "x".repeat(MAX_LENGTH - 6));
        assert_eq!(long_ok.len(), MAX_LENGTH);
        assert!(parse(&long_ok).is_ok());
        let too_long = format!("a = '{}'", "x".repeat(MAX_LENGTH - 5));
        let e = parse(&too_long).unwrap_err();
        assert_eq!(e.offset, MAX_LENGTH);
        assert!(e.message.contains("longer than 4096 bytes"), "{e}");
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty selector"),
            ("  -- only a comment", 0, "empty selector"),
            ("(a = 1", 6, "expected ')'"),
            ("(a = 1 b", 7, "expected ')', found identifier 'b'"),
            ("a = 1)", 5, "unbalanced ')'"),
            ("a =", 3, "unexpected end of selector"),
            ("a = 1 AND", 9, "unexpected end of selector"),
            ("a b", 2, "unexpected identifier 'b'"),
            ("a = = 1", 4, "expected an expression, found '='"),
            ("a = 1 = 2", 6, "a boolean cannot be compared with a number"),
            ("a IS NULL = NULL", 12, "NULL cannot be compared"),
            ("a < b < c", 6, "cannot be chained"),
            ("a LIKE b", 7, "expected a string literal after LIKE"),
            (
                "a LIKE 'x' ESCAPE 'ab'",
                18,
                "ESCAPE must be a single character",
            ),
            (
                "a LIKE 'x' ESCAPE ''",
                18,
                "ESCAPE must be a single character",
            ),
            ("a IN 'x'", 5, "expected '(' after IN"),
            ("a IN ()", 6, "expected a string literal in the IN list"),
            ("a IN ('x' 'y')", 10, "expected ')' or ','"),
            ("a IN ('x', 1)", 11, "expected a string literal"),
            ("a + 1 IN ('x')", 0, "IN needs an identifier"),
            ("a BETWEEN 1 OR 2", 12, "expected AND in BETWEEN"),
            ("a IS 5", 5, "expected NULL or NOT NULL after IS"),
            ("a IS NOT 5", 9, "expected NULL after IS NOT"),
            ("a NOT = 1", 2, "unexpected keyword NOT"),
            ("5", 0, "expected a boolean expression, found a number"),
            ("'x'", 0, "expected a boolean expression, found a string"),
            ("a + 1", 0, "expected a boolean expression"),
            (
                "a AND 'x'",
                6,
                "expected a boolean expression, found a string",
            ),
            ("NOT 5", 4, "expected a boolean expression"),
            (
                "a = NULL",
                4,
                "NULL cannot be compared with '='; use IS NULL",
            ),
            ("NULL <> a", 0, "use IS NOT NULL"),
            ("a < 'x'", 4, "a string cannot be used with '<'"),
            ("TRUE > a", 0, "a boolean cannot be used with '>'"),
            ("a >= NULL", 5, "NULL cannot be used with '>='"),
            ("(a = 1) <= 2", 0, "a boolean cannot be used with '<='"),
            (
                "a BETWEEN 'a' AND 'z'",
                10,
                "a string cannot be used with BETWEEN",
            ),
            ("TRUE = 1", 5, "a boolean cannot be compared with a number"),
            ("x = 9223372036854775808", 4, "integer literal out of range"),
            (
                "x = -9223372036854775809",
                5,
                "integer literal out of range",
            ),
            ("XPATH '//a'", 0, "not supported"),
            ("a = (", 5, "unexpected end of selector"),
            ("a = ,", 4, "expected an expression, found ','"),
        ];
        for &(src, offset, msg) in cases {
            let e = match parse(src) {
                Ok(expr) => panic!("{src:?} parsed as {expr:?}"),
                Err(e) => e,
            };
            assert!(e.message.contains(msg), "{src:?}: {e}");
            assert_eq!(e.offset, offset, "{src:?}: {e}");
        }
    }

    #[test]
    fn accepted_forms() {
        for src in [
            "flag",
            "(flag)",
            "NULL",
            "TRUE",
            "NOT flag",
            "a = 'x' AND NOT b",
            "x > 5 = TRUE",
            "a = b = c",
            "a = 'x' = TRUE <> FALSE",
            "a IS NULL = TRUE",
            "a = 1 IS NOT NULL",
            "'5' = x",
            "(a = 1) = 'true'",
            "x + 1 > 2 * y",
            "x % 2 = 0",
            "a IS NULL OR b IS NOT NULL",
            "(a = 1) IS NULL",
            "- x < 3",
            "JMSPriority > 4 AND JMSType = 'car'",
            "mc_identity = 'node-1.example.com'",
        ] {
            ok(src);
        }
    }
}
