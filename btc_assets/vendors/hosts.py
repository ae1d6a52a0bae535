"""The vendors' real base URLs: the one definition of each, used as the live defaults.

No imports, so ``settings`` can read them without loading any client.
"""

LIVE_BINANCE_SPOT_URL = "https://api.binance.com"
LIVE_BINANCE_FUTURES_URL = "https://fapi.binance.com"
# Binance's bulk archive (zips of daily/monthly CSVs with .CHECKSUM siblings).
LIVE_BINANCE_ARCHIVE_URL = "https://data.binance.vision"
LIVE_COINGLASS_URL = "https://open-api-v4.coinglass.com"
LIVE_TELEGRAM_URL = "https://api.telegram.org"
# FRED (St. Louis Fed): observations at /fred/series/observations, vintages via realtime_*.
LIVE_FRED_URL = "https://api.stlouisfed.org"
# Alpha Vantage: every function behind GET /query, the key as the `apikey` query parameter.
LIVE_ALPHAVANTAGE_URL = "https://www.alphavantage.co"
# CryptoQuant: BTC on-chain metrics under /v1/, the token as `Authorization: Bearer`.
LIVE_CRYPTOQUANT_URL = "https://api.cryptoquant.com"
# CoinAPI market data: OHLCV history and symbol metrics, the key as `X-CoinAPI-Key`.
LIVE_COINAPI_URL = "https://rest.coinapi.io"
# Binance's kline websockets: spot, and USD-M's routed /market endpoint (klines are served
# only there since 2026-04-23).
LIVE_BINANCE_SPOT_STREAM_URL = "wss://stream.binance.com:9443"
LIVE_BINANCE_FUTURES_STREAM_URL = "wss://fstream.binance.com/market"
