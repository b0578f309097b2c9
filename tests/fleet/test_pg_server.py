"""The fixture itself: a PostgreSQL of our own starts, answers, survives a stop and start with its
data, and hands out separate databases."""
import secrets


def test_server_keeps_data_across_a_restart(pg):
    db = "t_" + secrets.token_hex(4)
    pg.create_database(db)
    pg.psql(db, "CREATE TABLE t (v BIGINT); INSERT INTO t VALUES (42)")
    pg.stop()
    pg.start()
    assert pg.psql(db, "SELECT v FROM t").strip() == "42"
    assert f"/{db}?host=" in pg.url_for(db)
