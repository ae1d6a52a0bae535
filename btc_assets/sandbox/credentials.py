"""The sandbox's own keys: not secrets, they open only the offline vendor.

Kept apart from the routes so the sandbox-mode resources can name them without loading the
synthetic market; a real key only ever comes from the environment (``dg.EnvVar``).
"""

SANDBOX_COINGLASS_KEY = "sandbox-coinglass-key"
SANDBOX_TELEGRAM_TOKEN = "123456789:sandbox-telegram-token"
SANDBOX_TELEGRAM_CHAT_ID = "-1001234567890"  # a supergroup
SANDBOX_MIGRATED_CHAT_ID = "-123456789"  # an old group, upgraded to the supergroup above
# A USD-M key pair: the sandbox checks the X-MBX-APIKEY header and the HMAC signature with them.
SANDBOX_BINANCE_API_KEY = "sandbox-binance-api-key"
SANDBOX_BINANCE_API_SECRET = "sandbox-binance-api-secret"
