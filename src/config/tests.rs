//! Unit tests of the pure parts of configuration handling; the binary's messages are covered
//! by tests/it/config_validate.rs.

use std::path::Path;

use super::validate::{database_path, did_you_mean, template_fields};

#[test]
fn dburi_forms() {
    let base = Path::new("/etc/nodepool");
    assert_eq!(
        database_path("sqlite:///var/lib/np.db", base).unwrap(),
        Path::new("/var/lib/np.db")
    );
    assert_eq!(
        database_path("sqlite:////var/lib/np.db", base).unwrap(),
        Path::new("/var/lib/np.db")
    );
    assert_eq!(
        database_path("state/np.db", base).unwrap(),
        Path::new("/etc/nodepool/state/np.db")
    );
    assert_eq!(
        database_path("/abs.db", base).unwrap(),
        Path::new("/abs.db")
    );
    let mysql = database_path("mysql+pymysql://nodepool@localhost/nodepool", base).unwrap_err();
    assert!(
        mysql.contains("mysql+pymysql://") && mysql.contains("SQLite"),
        "{mysql}"
    );
    assert!(database_path("sqlite://:memory:", base)
        .unwrap_err()
        .contains("in-memory"));
}

#[test]
fn template_fields_are_found_and_braces_checked() {
    assert_eq!(
        template_fields("{label.name}-{provider.name}-{node_id:05d}").unwrap(),
        vec!["label.name", "provider.name", "node_id"]
    );
    assert_eq!(template_fields("a{{b}}c").unwrap(), Vec::<String>::new());
    assert!(template_fields("{label.name").is_err());
    assert!(template_fields("x}").is_err());
}

#[test]
fn suggestions_pick_the_closest_key() {
    let keys = vec![
        "min-ready".to_string(),
        "image".to_string(),
        "name".to_string(),
    ];
    assert_eq!(
        did_you_mean("min_ready", &keys),
        "; did you mean `min-ready`?"
    );
    assert_eq!(did_you_mean("imgae", &keys), "; did you mean `image`?");
    assert!(did_you_mean("colour", &keys).starts_with("; expected one of"));
}

#[test]
fn templates_render_fields_escapes_and_padding() {
    let fields = [("label.name", "small"), ("node_id", "42")];
    assert_eq!(
        super::render_template("{label.name}-{node_id}", &fields),
        "small-42"
    );
    assert_eq!(
        super::render_template("n{node_id:05d}{{x}}", &fields),
        "n00042{x}"
    );
}
