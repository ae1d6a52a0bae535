"""The vendors' real base URLs: the one definition of each, used as the live defaults.

No imports, so ``settings`` can read them without loading any client.
"""

LIVE_BINANCE_SPOT_URL = "https://api.binance.com"
LIVE_BINANCE_FUTURES_URL = "https://fapi.binance.com"
# Binance's bulk archive (zips of daily/monthly CSVs with .CHECKSUM siblings).
LIVE_BINANCE_ARCHIVE_URL = "https://data.binance.vision"
LIVE_COINGLASS_URL = "https://open-api-v4.coinglass.com"
LIVE_TELEGRAM_URL = "https://api.telegram.org"
# Binance's kline websockets: spot, and USD-M's routed /market endpoint (klines are served
# only there since 2026-04-23).
LIVE_BINANCE_SPOT_STREAM_URL = "wss://stream.binance.com:9443"
LIVE_BINANCE_FUTURES_STREAM_URL = "wss://fstream.binance.com/market"
