"""bench/run.sh's Flask peer: the latchkey server's JSON routes on Flask + Flask-Login.

Users live in a SQLite table (the sqlite3 module, one connection per request as the
Flask tutorial does it); passwords are hashed with werkzeug's generate_password_hash
default method. Flask-Login keeps the user id in Flask's own session, a signed cookie
(named `id` here, like latchkey's). The database file is FLASK_PEER_DB; start.sh runs
this under gunicorn.
"""

import os
import secrets
import sqlite3

from flask import Flask, g, jsonify, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

DATABASE = os.environ.get("FLASK_PEER_DB", "flask-peer.db")

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32),
    SESSION_COOKIE_NAME="id",
    SESSION_COOKIE_HTTPONLY=True,
    SESSION_COOKIE_SAMESITE="Lax",
)
login_manager = LoginManager(app)


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(DATABASE)
        g.db.row_factory = sqlite3.Row
    return g.db


@app.teardown_appcontext
def close_db(_exception):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db():
    with sqlite3.connect(DATABASE) as db:
        db.execute("pragma journal_mode = wal")
        db.execute(
            "create table if not exists users ("
            " id integer primary key autoincrement,"
            " username text not null unique,"
            " password text not null)"
        )


class User(UserMixin):
    def __init__(self, row):
        self.id = row["id"]
        self.username = row["username"]
        self.password = row["password"]


@login_manager.user_loader
def load_user(user_id):
    row = get_db().execute("select * from users where id = ?", (int(user_id),)).fetchone()
    return User(row) if row else None


@login_manager.unauthorized_handler
def unauthorized():
    return jsonify(error="Please log in"), 401


def credentials():
    body = request.get_json(silent=True) or {}
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username.strip() or not isinstance(password, str) or not password:
        return None
    return username, password


@app.post("/signup")
def signup():
    creds = credentials()
    if creds is None:
        return jsonify(error="Please specify username and password"), 400
    username, password = creds
    db = get_db()
    try:
        db.execute(
            "insert into users (username, password) values (?, ?)",
            (username, generate_password_hash(password)),
        )
        db.commit()
    except sqlite3.IntegrityError:
        return jsonify(error=f"Username {username} is not available."), 409
    return jsonify(message="User account has been created."), 201


@app.post("/login")
def login():
    creds = credentials()
    if creds is None:
        return jsonify(error="Please specify username and password"), 400
    username, password = creds
    row = get_db().execute("select * from users where username = ?", (username,)).fetchone()
    if row is None or not check_password_hash(row["password"], password):
        return jsonify(error="Invalid username or password"), 401
    login_user(User(row))
    return jsonify(message="Logged in")


@app.route("/home", methods=["GET", "POST"])
@login_required
def home():
    return jsonify(message=f"Hello, {current_user.username}")


@app.post("/logout")
def logout():
    if not current_user.is_authenticated:
        return jsonify(message="Not logged in")
    logout_user()
    return jsonify(message="Logged out")


init_db()
