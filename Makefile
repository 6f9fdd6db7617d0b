# The two commands: `make run` (the admin with a worker and beat on SQLite) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432

.PHONY: run test install lint format bench clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

install: $(BIN)/activate

# `make run` serves plain http on 127.0.0.1 with DEBUG off: its own random SECRET_KEY, made once and kept in
# var/secret_key (git-ignored), cookies without the Secure flag, the admin's CSS collected for WhiteNoise.
WEB_PORT ?= 8000
RUN_ENV = SECRET_KEY="$$(cat var/secret_key)" SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false WEB_PORT=$(WEB_PORT)

run: install
	mkdir -p var/broker/queue var/broker/processed var/media
	@test -s var/secret_key || (umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key)
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput
	$(RUN_ENV) $(BIN)/python manage.py collectstatic --noinput -v 0
	$(RUN_ENV) $(BIN)/python manage.py setup_periodic_tasks
	$(RUN_ENV) $(BIN)/python manage.py seed_demo
	$(RUN_ENV) $(BIN)/python manage.py seed_demo_history
	$(RUN_ENV) PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

test: install
	PG_URL="$(PG_URL)" PATH="$(CURDIR)/$(BIN):$$PATH" bin/test-both

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var/db.sqlite3* var/broker var/media test-artifacts
