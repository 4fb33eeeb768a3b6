//! PostgreSQL and MariaDB end to end: the real tracer against real servers
//! with psql, pgbench, the mariadb client and Perl's `DBD::MariaDB` (server-side
//! prepared statements).
#![expect(
    clippy::expect_used,
    reason = "test helpers fail the test with a panic, as the tests do"
)]

mod common;

use std::process::Command;

use common::{run_ok, servers, Tracer};
use serde_json::Value;

fn op_count(spans: &[&Value], op: &str) -> usize {
    spans
        .iter()
        .filter(|s| s["attributes"]["db.operation.name"] == op)
        .count()
}

fn psql(port: u16, sql: &str) -> String {
    run_ok(Command::new("psql").args([
        &format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=0",
        "-c",
        sql,
    ]))
}

#[test]
fn postgres_simple_queries_from_server_side() {
    let pg = servers::postgres();
    psql(pg.port, "CREATE TABLE users (id int, name text)");
    let tracer = Tracer::start(&["--pid", &pg.pid().to_string()]);
    psql(
        pg.port,
        "INSERT INTO users VALUES (1, 'alice-secret'), (2, 'bob')",
    );
    psql(pg.port, "SELECT name FROM users WHERE id > 0");
    let _ = Command::new("psql")
        .args([
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
                pg.port
            ),
            "-X",
            "-c",
            "SELECT * FROM missing_table",
        ])
        .output();
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "server" && s["protocol"] == "postgresql")
        .collect();
    assert_eq!(spans.len(), 3, "{:#?}", run.spans);
    let insert = spans
        .iter()
        .find(|s| s["name"] == "INSERT")
        .expect("INSERT span");
    assert_eq!(insert["attributes"]["db.system.name"], "postgresql");
    assert_eq!(
        insert["attributes"]["db.query.text"],
        "INSERT INTO users VALUES (?, ?), (?, ?)"
    );
    let select = spans
        .iter()
        .find(|s| s["attributes"]["db.query.text"] == "SELECT name FROM users WHERE id > ?")
        .expect("SELECT");
    assert_eq!(select["attributes"]["db.response.returned_rows"], 2);
    let failed = spans
        .iter()
        .find(|s| s["status"] == "error")
        .expect("error span");
    assert_eq!(failed["attributes"]["db.response.status_code"], "42P01");
    let everything: String = run.spans.iter().map(Value::to_string).collect();
    assert!(!everything.contains("alice-secret"));
}

#[test]
fn pgbench_prepared_statements_every_execute_is_a_span() {
    let pg = servers::postgres();
    run_ok(Command::new("pgbench").args([
        "-i",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port.to_string(),
        "-U",
        "postgres",
        "postgres",
    ]));
    let tracer = Tracer::start(&["--pid", &pg.pid().to_string()]);
    let transactions = 200;
    run_ok(Command::new("pgbench").args([
        "-n",
        "-M",
        "prepared",
        "-c",
        "2",
        "-t",
        &transactions.to_string(),
        "-h",
        "127.0.0.1",
        "-p",
        &pg.port.to_string(),
        "-U",
        "postgres",
        "postgres",
    ]));
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["protocol"] == "postgresql")
        .collect();
    // tpcb-like: BEGIN; 3 UPDATE; SELECT; INSERT; END per transaction, per client.
    let per_client = |n: usize| n * 2;
    assert_eq!(
        op_count(&spans, "INSERT"),
        per_client(transactions),
        "{}",
        run.summary()
    );
    assert_eq!(op_count(&spans, "UPDATE"), per_client(transactions) * 3);
    assert_eq!(op_count(&spans, "BEGIN"), per_client(transactions));
    assert_eq!(op_count(&spans, "END"), per_client(transactions));
    let insert = spans
        .iter()
        .find(|s| s["attributes"]["db.operation.name"] == "INSERT")
        .expect("insert");
    let text = insert["attributes"]["db.query.text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("INSERT INTO pgbench_history"),
        "statement text from Parse: {text}"
    );
    assert!(text.contains("$1"), "{text}");
}

fn mariadb(port: u16, sql: &str) -> std::process::Output {
    Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-u",
            "root",
            "--skip-ssl",
            "-e",
            sql,
        ])
        .output()
        .expect("mariadb client")
}

#[test]
fn mariadb_queries_and_prepared_statements() {
    let db = servers::mariadb();
    assert!(mariadb(
        db.port,
        "CREATE DATABASE t; CREATE TABLE t.users (id INT, name TEXT)"
    )
    .status
    .success());
    let server_pid = servers::listener_pid(db.port);
    let tracer = Tracer::start(&["--pid", &server_pid.to_string()]);
    assert!(mariadb(
        db.port,
        "INSERT INTO t.users VALUES (1, 'carol-secret'), (2, 'dave')"
    )
    .status
    .success());
    assert!(mariadb(db.port, "SELECT name FROM t.users WHERE id > 0")
        .status
        .success());
    assert!(!mariadb(db.port, "SELECT * FROM t.missing").status.success());
    let perl = format!(
        r#"use DBI; my $db = DBI->connect("DBI:MariaDB:database=t;host=127.0.0.1;port={port}", "root", "", {{mariadb_server_prepare => 1, RaiseError => 1}});
my $st = $db->prepare("SELECT name FROM users WHERE id = ?");
for my $id (1, 2, 1) {{ $st->execute($id); $st->fetchall_arrayref(); }}
print "ok\n";"#,
        port = db.port
    );
    assert_eq!(
        run_ok(Command::new("perl").args(["-e", &perl])).trim(),
        "ok"
    );
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["protocol"] == "mysql")
        .collect();
    let with_text = |text: &str| {
        spans
            .iter()
            .filter(|s| s["attributes"]["db.query.text"] == text)
            .count()
    };
    assert_eq!(
        with_text("INSERT INTO t.users VALUES (?, ?), (?, ?)"),
        1,
        "{spans:#?}"
    );
    assert_eq!(with_text("SELECT name FROM t.users WHERE id > ?"), 1);
    let failed: Vec<&&Value> = spans.iter().filter(|s| s["status"] == "error").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attributes"]["db.response.status_code"], "1146");
    // One PREPARE, three executions carrying the prepared text.
    assert_eq!(op_count(&spans, "PREPARE"), 1, "{spans:#?}");
    let executes: Vec<&&Value> = spans
        .iter()
        .filter(|s| {
            s["attributes"]["db.query.text"] == "SELECT name FROM users WHERE id = ?"
                && s["name"] == "SELECT"
        })
        .collect();
    assert_eq!(executes.len(), 3, "{spans:#?}");
    assert!(executes
        .iter()
        .all(|s| s["attributes"]["db.response.returned_rows"] == 1));
    assert!(spans
        .iter()
        .all(|s| s["attributes"]["db.system.name"] == "mariadb"));
    let everything: String = run.spans.iter().map(Value::to_string).collect();
    assert!(!everything.contains("carol-secret"));
}

#[test]
fn postgres_client_side_via_comm() {
    let pg = servers::postgres();
    let tracer = Tracer::start(&["--comm", "psql"]);
    psql(pg.port, "SELECT 1");
    psql(pg.port, "SELECT 2");
    let run = tracer.stop();
    let spans: Vec<&Value> = run.spans.iter().filter(|s| s["kind"] == "client").collect();
    assert_eq!(spans.len(), 2, "{:#?}", run.spans);
    for span in &spans {
        assert_eq!(span["protocol"], "postgresql");
        assert_eq!(span["process"], "psql");
        assert_eq!(span["attributes"]["db.query.text"], "SELECT ?");
        assert_eq!(span["attributes"]["server.port"], pg.port);
    }
}

#[test]
fn mariadb_client_side_via_comm() {
    let db = servers::mariadb();
    let tracer = Tracer::start(&["--comm", "mariadb"]);
    assert!(mariadb(db.port, "SELECT 1").status.success());
    assert!(mariadb(db.port, "SELECT 'x', 2").status.success());
    let run = tracer.stop();
    let spans: Vec<&Value> = run
        .spans
        .iter()
        .filter(|s| s["kind"] == "client" && s["name"] == "SELECT")
        .collect();
    let texts: Vec<&str> = spans
        .iter()
        .filter_map(|s| s["attributes"]["db.query.text"].as_str())
        .collect();
    assert!(
        texts.contains(&"SELECT ?") && texts.contains(&"SELECT ?, ?"),
        "{:#?}",
        run.spans
    );
    assert!(spans.iter().all(|s| s["process"] == "mariadb"));
}
