"""The sandbox's own keys: not secrets, they open only the offline vendor.

Kept apart from the routes so the sandbox-mode resources can name them without loading the
synthetic market; a real key only ever comes from the environment (``dg.EnvVar``).
"""

# CoinGlass keys by plan: the default is Professional (history at every interval, heatmaps,
# Hyperliquid whales); Standard has no heatmaps, Startup (30m history and up) whales only,
# Hobbyist (4h and up) neither. Each refusal is CoinGlass's 200 {"code":"401","msg":"Upgrade plan"}.
SANDBOX_COINGLASS_KEY = "sandbox-coinglass-key"
SANDBOX_COINGLASS_STANDARD_KEY = "sandbox-coinglass-standard"
SANDBOX_COINGLASS_STARTUP_KEY = "sandbox-coinglass-startup"
SANDBOX_COINGLASS_HOBBYIST_KEY = "sandbox-coinglass-hobbyist"
SANDBOX_TELEGRAM_TOKEN = "123456789:sandbox-telegram-token"
SANDBOX_TELEGRAM_CHAT_ID = "-1001234567890"  # a supergroup
SANDBOX_MIGRATED_CHAT_ID = "-123456789"  # an old group, upgraded to the supergroup above
# A USD-M key pair: the sandbox checks the X-MBX-APIKEY header and the HMAC signature with them.
SANDBOX_BINANCE_API_KEY = "sandbox-binance-api-key"
SANDBOX_BINANCE_API_SECRET = "sandbox-binance-api-secret"
# FRED checks the key's shape (32 lower-case alphanumerics) before looking it up.
SANDBOX_FRED_API_KEY = "sandboxfredapikey000000000000001"
# Alpha Vantage: a free key (25 requests per UTC day, compact output only) and a premium one
# (outputsize=full and the premium functions, no daily quota).
SANDBOX_ALPHAVANTAGE_KEY = "sandbox-alphavantage-key"
SANDBOX_ALPHAVANTAGE_PREMIUM_KEY = "sandbox-alphavantage-premium-key"
# CryptoQuant Bearer tokens: a Professional plan (every endpoint) and a basic one that the
# sandbox refuses the plan-gated indicators (403, e.g. MPI).
SANDBOX_CRYPTOQUANT_TOKEN = "sandbox-cryptoquant-token"
SANDBOX_CRYPTOQUANT_BASIC_TOKEN = "sandbox-cryptoquant-basic-token"
# CoinAPI keys (X-CoinAPI-Key): a plan with OHLCV and metrics, and one without the metrics
# endpoint (403). Each has its own daily credit quota (bucket "coinapi").
SANDBOX_COINAPI_KEY = "sandbox-coinapi-key"
SANDBOX_COINAPI_OHLCV_ONLY_KEY = "sandbox-coinapi-ohlcv-only-key"
