# shared_map_api: the dashboard page, negotiated at LOCATION/ only.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

master_on();
no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map m tinymap?space=1m&entries=1000;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
    location /ro/ { shared_map_api readonly; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: a browser's Accept gets the page, with its policy; the script and style are inline
--- more_headers
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8
--- request
GET /api/
--- error_code: 200
--- response_headers_like
Content-Type: text/html; charset=utf-8
Content-Security-Policy: default-src 'none'; script-src 'sha256-[A-Za-z0-9+/]+=*'; style-src 'sha256-[A-Za-z0-9+/]+=*'; connect-src 'self'; .*frame-ancestors 'none'
Vary: Accept
X-Content-Type-Options: nosniff
--- response_body_like: ^<!DOCTYPE html>.*<body data-writable="yes">.*<script>.*</script>
--- response_body_unlike: (?i)(<script[^>]+src=|<link[^>]+stylesheet|https?://)

=== TEST 2: every other client still gets JSON, told that the answer varies
--- request
GET /api/
--- error_code: 200
--- response_headers
Content-Type: application/json
Vary: Accept
--- response_body_like: ^\{"maps":\[\{"name":"m"

=== TEST 3: format=html asks for the page whatever the Accept header
--- more_headers
Accept: application/json
--- request
GET /api/?format=html
--- error_code: 200
--- response_headers
Content-Type: text/html; charset=utf-8

=== TEST 4: under readonly the page is the one that offers no writes
--- request
GET /ro/?format=html
--- error_code: 200
--- response_body_like: <body data-writable="no">

=== TEST 5: a single map has no page
--- request
GET /api/m?format=html
--- error_code: 400
--- response_body
format "html" is for the list of maps only

=== TEST 6: format=json wins over a browser's Accept
--- more_headers
Accept: text/html
--- request
GET /api/?format=json
--- error_code: 200
--- response_headers
Content-Type: application/json
