#!/usr/bin/env bash
# Create .env from .env.example when it is missing, with fresh random secrets (an API key and a Fernet key).
# `make up` and `make dev` run this; an existing .env is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && exit 0
api_key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
secret_key=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
sed -e "s|^ECG_API_KEY=.*|ECG_API_KEY=${api_key}|" -e "s|^ECG_SECRET_KEY=.*|ECG_SECRET_KEY=${secret_key}|" \
  .env.example > .env
chmod 600 .env
echo "created .env with a new ECG_API_KEY and ECG_SECRET_KEY (read it for the API key: X-API-Key header)"
