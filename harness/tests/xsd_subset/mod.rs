//! A validator for the part of XML Schema 1.0 that the project's JUnit
//! schema (`tests/schemas/junit.xsd`) is written in, driven by the schema file
//! itself: global `xs:element`s (by `type` or an anonymous
//! `xs:complexType`), named `xs:complexType`s, `xs:simpleType` restrictions
//! of `xs:string` by `xs:pattern`, `xs:sequence` and `xs:choice` with
//! `minOccurs`/`maxOccurs`, `xs:element ref`, `xs:attribute` (`use`,
//! `type`), `mixed`. A schema that uses anything else is refused, so no
//! rule of it goes unchecked.
//!
//! Why not a crate: the one pure-Rust XSD validator on crates.io
//! (`xmlschema` 0.0.14) mis-reads this schema (a repeated `xs:choice`
//! inside an `xs:sequence` becomes "each alternative exactly once", and it
//! does not model `mixed`), so it rejects valid JUnit files; `libxml`
//! needs the system libxml2.
//!
//! What it checks in a document: every element is declared (globally, or
//! locally in its parent's type); every attribute is declared and the
//! `required` ones are present; attribute values of a pattern type match
//! it (whole value); children follow the content model (compiled to a
//! regular expression over child names); text appears only in `mixed` or
//! `xs:string` elements; `xs:string` elements have no children.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;

/// An element of a parsed document.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// The text directly inside this element, all runs joined.
    pub text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Parse an XML document into its root element.
pub fn parse(xml: &str) -> Result<Node, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    let open = |e: &quick_xml::events::BytesStart| -> Result<Node, String> {
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| format!("bad attribute: {err}"))?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let value = a
                .normalized_value(quick_xml::XmlVersion::default())
                .map_err(|err| format!("bad attribute value of {key}: {err}"))?
                .into_owned();
            attrs.push((key, value));
        }
        Ok(Node {
            name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
            attrs,
            children: Vec::new(),
            text: String::new(),
        })
    };
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {at}: {e}"))?;
        match event {
            Event::Start(e) => stack.push(open(&e)?),
            Event::Empty(e) => {
                let node = open(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("an end tag with no start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(|e| e.to_string())?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&text);
                } else if !text.trim().is_empty() {
                    return Err(format!("text outside the root element: {text:?}"));
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c,
                    None => {
                        let name = r.decode().map_err(|e| e.to_string())?;
                        entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?
                    }
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push(c);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("<{}> is not closed", stack[stack.len() - 1].name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

#[derive(Debug, Clone)]
enum AttrType {
    String,
    Pattern(regex::Regex),
}

#[derive(Debug, Clone)]
struct AttrDecl {
    ty: AttrType,
    required: bool,
}

#[derive(Debug, Clone)]
enum Content {
    /// `xs:string`: text only.
    Text,
    /// Child elements (a regex over `<name>` tokens), text only if mixed.
    Elements {
        model: regex::Regex,
        mixed: bool,
        /// Local element declarations: name -> type.
        locals: BTreeMap<String, Type>,
    },
}

#[derive(Debug, Clone)]
struct Type {
    content: Content,
    attrs: BTreeMap<String, AttrDecl>,
}

/// A schema: global elements by name.
pub struct Schema {
    elements: BTreeMap<String, Type>,
}

const XS: &str = "xs:";

fn xs(n: &Node) -> Result<&str, String> {
    n.name
        .strip_prefix(XS)
        .ok_or_else(|| format!("<{}> is not an XML Schema element", n.name))
}

fn occurs(n: &Node) -> Result<String, String> {
    let min = n.attr("minOccurs").unwrap_or("1");
    let max = n.attr("maxOccurs").unwrap_or("1");
    let min: u32 = min
        .parse()
        .map_err(|_| format!("minOccurs {min:?} is not a number"))?;
    Ok(match max {
        "unbounded" => format!("{{{min},}}"),
        m => {
            let m: u32 = m
                .parse()
                .map_err(|_| format!("maxOccurs {m:?} is not a number"))?;
            format!("{{{min},{m}}}")
        }
    })
}

struct Builder<'a> {
    simple: &'a BTreeMap<String, regex::Regex>,
    complex: &'a BTreeMap<String, &'a Node>,
}

impl Builder<'_> {
    fn attr_type(&self, ty: Option<&str>) -> Result<AttrType, String> {
        match ty {
            None | Some("xs:string") => Ok(AttrType::String),
            Some(t) => self
                .simple
                .get(t)
                .map(|re| AttrType::Pattern(re.clone()))
                .ok_or_else(|| format!("attribute type {t} is not in the subset")),
        }
    }

    /// The type an element declaration gives its element.
    fn element_type(&self, decl: &Node) -> Result<Type, String> {
        match (decl.attr("type"), decl.children.as_slice()) {
            (Some("xs:string"), []) => Ok(Type {
                content: Content::Text,
                attrs: BTreeMap::new(),
            }),
            (Some(t), []) => {
                let ct = self
                    .complex
                    .get(t)
                    .ok_or_else(|| format!("type {t} is not declared"))?;
                self.complex_type(ct)
            }
            (None, [ct]) if xs(ct)? == "complexType" => self.complex_type(ct),
            _ => Err(format!(
                "element {:?}: only a type or one complexType is in the subset",
                decl.attr("name")
            )),
        }
    }

    fn complex_type(&self, ct: &Node) -> Result<Type, String> {
        let mixed = match ct.attr("mixed") {
            None | Some("false") => false,
            Some("true") => true,
            Some(m) => return Err(format!("mixed={m:?}")),
        };
        let mut attrs = BTreeMap::new();
        let mut model = String::new();
        let mut locals = BTreeMap::new();
        for c in &ct.children {
            match xs(c)? {
                "attribute" => {
                    let name = c.attr("name").ok_or("an attribute without a name")?;
                    let required = match c.attr("use") {
                        None | Some("optional") => false,
                        Some("required") => true,
                        Some(u) => return Err(format!("use={u:?}")),
                    };
                    attrs.insert(
                        name.to_string(),
                        AttrDecl {
                            ty: self.attr_type(c.attr("type"))?,
                            required,
                        },
                    );
                }
                "sequence" | "choice" if model.is_empty() => {
                    model = self.particle(c, &mut locals)?;
                }
                other => return Err(format!("xs:{other} in a complexType is not in the subset")),
            }
        }
        let model = regex::Regex::new(&format!("^(?:{model})$")).map_err(|e| e.to_string())?;
        Ok(Type {
            content: Content::Elements {
                model,
                mixed,
                locals,
            },
            attrs,
        })
    }

    /// A particle as a regular expression over `<name>` tokens.
    fn particle(&self, p: &Node, locals: &mut BTreeMap<String, Type>) -> Result<String, String> {
        let kind = xs(p)?;
        let inner = match kind {
            "element" => match (p.attr("ref"), p.attr("name")) {
                (Some(r), None) => format!("<{}>", regex::escape(r)),
                (None, Some(n)) => {
                    locals.insert(n.to_string(), self.element_type(p)?);
                    format!("<{}>", regex::escape(n))
                }
                _ => return Err("an element particle needs a ref or a name".into()),
            },
            "sequence" | "choice" => {
                let parts = p
                    .children
                    .iter()
                    .map(|c| self.particle(c, locals))
                    .collect::<Result<Vec<_>, _>>()?;
                parts.join(if kind == "choice" { "|" } else { "" })
            }
            other => return Err(format!("xs:{other} as a particle is not in the subset")),
        };
        Ok(format!("(?:{inner}){}", occurs(p)?))
    }
}

impl Schema {
    /// Read a schema; anything outside the subset is an error.
    pub fn parse(xsd: &str) -> Result<Self, String> {
        let root = parse(xsd)?;
        if root.name != "xs:schema" {
            return Err(format!("the root is <{}>, not <xs:schema>", root.name));
        }
        let mut simple = BTreeMap::new();
        let mut complex = BTreeMap::new();
        let mut globals = Vec::new();
        for c in &root.children {
            let name = c
                .attr("name")
                .ok_or_else(|| format!("a global xs:{} without a name", xs(c).unwrap_or("?")))?;
            match xs(c)? {
                "simpleType" => {
                    let [r] = c.children.as_slice() else {
                        return Err(format!("simpleType {name}: expected one restriction"));
                    };
                    if xs(r)? != "restriction" || r.attr("base") != Some("xs:string") {
                        return Err(format!("simpleType {name}: only restrictions of xs:string"));
                    }
                    let [p] = r.children.as_slice() else {
                        return Err(format!("simpleType {name}: expected one pattern"));
                    };
                    if xs(p)? != "pattern" {
                        return Err(format!("simpleType {name}: only xs:pattern facets"));
                    }
                    let pattern = p.attr("value").ok_or("a pattern without a value")?;
                    // An XSD pattern matches the whole value.
                    let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|e| format!("pattern of {name}: {e}"))?;
                    simple.insert(name.to_string(), re);
                }
                "complexType" => {
                    complex.insert(name.to_string(), c);
                }
                "element" => globals.push(c),
                other => return Err(format!("global xs:{other} is not in the subset")),
            }
        }
        let b = Builder {
            simple: &simple,
            complex: &complex,
        };
        let mut elements = BTreeMap::new();
        for g in globals {
            let name = g.attr("name").unwrap_or_default().to_string();
            elements.insert(name, b.element_type(g)?);
        }
        Ok(Self { elements })
    }

    /// Every violation in `xml`, each with the path of its element.
    pub fn validate(&self, xml: &str) -> Result<Vec<String>, String> {
        let root = parse(xml)?;
        let mut errors = Vec::new();
        match self.elements.get(&root.name) {
            Some(t) => self.check(&root, t, &format!("/{}", root.name), &mut errors),
            None => errors.push(format!(
                "/{}: not a global element of the schema",
                root.name
            )),
        }
        Ok(errors)
    }

    fn check(&self, n: &Node, t: &Type, path: &str, errors: &mut Vec<String>) {
        for (k, v) in &n.attrs {
            match t.attrs.get(k) {
                None => errors.push(format!("{path}: attribute {k} is not declared")),
                Some(AttrDecl {
                    ty: AttrType::Pattern(re),
                    ..
                }) if !re.is_match(v) => errors.push(format!(
                    "{path}: attribute {k}={v:?} does not match {}",
                    re.as_str()
                )),
                Some(_) => {}
            }
        }
        for (k, d) in &t.attrs {
            if d.required && n.attr(k).is_none() {
                errors.push(format!("{path}: required attribute {k} is missing"));
            }
        }
        match &t.content {
            Content::Text => {
                if !n.children.is_empty() {
                    errors.push(format!("{path}: text only, but has child elements"));
                }
            }
            Content::Elements {
                model,
                mixed,
                locals,
            } => {
                if !mixed && !n.text.trim().is_empty() {
                    errors.push(format!(
                        "{path}: text {:?} where only elements belong",
                        n.text.trim()
                    ));
                }
                let tokens: String = n.children.iter().map(|c| format!("<{}>", c.name)).collect();
                if !model.is_match(&tokens) {
                    errors.push(format!(
                        "{path}: children {tokens} do not follow the content model {}",
                        model.as_str()
                    ));
                }
                let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
                for c in &n.children {
                    let i = seen.entry(c.name.as_str()).or_insert(0);
                    *i += 1;
                    let cpath = format!("{path}/{}[{i}]", c.name);
                    match locals.get(&c.name).or_else(|| self.elements.get(&c.name)) {
                        Some(ct) => self.check(c, ct, &cpath, errors),
                        None => errors.push(format!("{cpath}: not declared")),
                    }
                }
            }
        }
    }
}
