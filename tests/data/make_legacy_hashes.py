"""Generates tests/data/legacy_hashes.json with the real Python libraries.

    pip install werkzeug bcrypt passlib django argon2-cffi
    python3 tests/data/make_legacy_hashes.py

Costs are lowered where the library allows it, so the (unoptimised) test build verifies
them quickly; the formats are exactly what the libraries write.
"""
import json
from importlib import metadata
import pathlib

import argon2
import bcrypt
import werkzeug
import django
from django.conf import settings
from passlib.hash import pbkdf2_sha256, pbkdf2_sha512
from werkzeug.security import generate_password_hash

settings.configure(PASSWORD_HASHERS=[])
django.setup()
from django.contrib.auth import hashers  # noqa: E402


class FastDjangoPbkdf2(hashers.PBKDF2PasswordHasher):
    iterations = 1000


class FastDjangoArgon2(hashers.Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 1024
    parallelism = 2


class FastDjangoBcryptSha256(hashers.BCryptSHA256PasswordHasher):
    rounds = 4


PASSWORD = "correct horse battery"
UNICODE = "pässwörd 🔑 ünïcödé"
LONG_72 = "x" * 72

rows = []


def add(fmt, password, hashed):
    rows.append({"format": fmt, "password": password, "hash": hashed})


for password in (PASSWORD, UNICODE):
    add("werkzeug pbkdf2:sha256", password, generate_password_hash(password, "pbkdf2:sha256:1000"))
    add("werkzeug pbkdf2:sha512", password, generate_password_hash(password, "pbkdf2:sha512:1000"))
    add("werkzeug scrypt", password, generate_password_hash(password, "scrypt:1024:8:1"))
    add("bcrypt $2b$", password, bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode())
    add("bcrypt $2a$", password, bcrypt.hashpw(password.encode(), bcrypt.gensalt(4, b"2a")).decode())
    # PHP's $2y$ is the same algorithm as $2b$; Python's bcrypt cannot write the prefix.
    add("bcrypt $2y$", password, "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()[4:])
    salt = hashers.get_random_string(22)
    add("django pbkdf2_sha256", password, FastDjangoPbkdf2().encode(password, FastDjangoPbkdf2().salt()))
    add("django argon2", password, FastDjangoArgon2().encode(password, FastDjangoArgon2().salt()))
    add("django bcrypt_sha256", password, FastDjangoBcryptSha256().encode(password, FastDjangoBcryptSha256().salt()))
    add("passlib pbkdf2-sha256", password, pbkdf2_sha256.using(rounds=1000).hash(password))
    add("passlib pbkdf2-sha512", password, pbkdf2_sha512.using(rounds=1000).hash(password))
    add("argon2i other params", password, argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=2, type=argon2.Type.I).hash(password))
    add("argon2id other params", password, argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1, type=argon2.Type.ID).hash(password))
# bcrypt's 72-byte rule: a 73-byte password that starts with these 72 must not match.
add("bcrypt 72 bytes", LONG_72, bcrypt.hashpw(LONG_72.encode(), bcrypt.gensalt(4)).decode())

out = pathlib.Path(__file__).with_name("legacy_hashes.json")
out.write_text(json.dumps({
    "generated_by": {name: metadata.version(name) for name in ("werkzeug", "bcrypt", "passlib", "django", "argon2-cffi")},
    "hashes": rows,
}, indent=1, ensure_ascii=False) + "\n")
print(f"{len(rows)} hashes written to {out}")
