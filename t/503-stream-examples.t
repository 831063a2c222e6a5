# The stream examples in nginx-conf/, run as they are (their ports moved to the
# test's): connections per client with a limit, an IP block list for a TCP
# proxy written through the HTTP API, connections counted per SNI name.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use SharedMapStream;

no_shuffle();
no_long_string();
no_root_location();
master_on();
workers(2);

my %ports = (12345 => 1, 12346 => 2, 12399 => 3, 12443 => 1, 12444 => 2);
my %example;
for my $name (qw(stream-conn-limit stream-blocklist stream-sni)) {
    my $file = "$name.conf";
    my @subst = $name eq 'stream-conn-limit' ? (qr/\[1-5\]/ => '[1-2]') : ();
    my $stream = example_stream($file, %ports);
    $stream =~ s/$subst[0]/$subst[1]/g if @subst;
    my ($http, $server) = example_config($file);
    $example{$name} = ["load_module \$TEST_NGINX_MODULE;\n$stream\n", $http, $server];
}

add_block_preprocessor(sub {
    my $block = shift;
    my ($name) = $block->name =~ /\b(stream-[a-z-]+)\.conf/ or die "which example?";
    my ($main, $http, $server) = @{ $example{$name} };
    $block->set_value(main_config => $main);
    $block->set_value(http_config => $http);
    $block->set_value(config => $server);
});

# `--- init` runs in package Test::Nginx::Util.
{
    no strict 'refs';
    *{"Test::Nginx::Util::$_"} = \&{"main::$_"} for qw(tcp_is api stream_port);
}

sub tls_hello {
    my ($n, $name) = @_;
    my $port = stream_port($n);
    system("openssl s_client -connect 127.0.0.1:$port -servername $name </dev/null >/dev/null 2>&1");
}
{
    no strict 'refs';
    *{"Test::Nginx::Util::tls_hello"} = \&tls_hello;
}

run_tests();

__DATA__

=== TEST 1: stream-conn-limit.conf: a client's connections beyond the limit reach the refusing server; the API reads and resets the count
--- init
tcp_is(1, "", "welcome\n", "connection $_: under the limit") for 1 .. 2;
tcp_is(1, "", "too many connections, try again in a minute\n", "connection 3: over the limit");
--- request eval
["GET /maps/conns?key=127.0.0.1", "DELETE /maps/conns?key=127.0.0.1"]
--- error_code eval
[200, 204]
--- response_body eval
["3", ""]
--- no_error_log
[error]

=== TEST 2: stream-blocklist.conf: a range listed through the HTTP API is refused from the next TCP connection on, and served again once removed
--- init
tcp_is(1, "", "welcome\n", "not listed");
api(PUT => "/maps/blocked?key=127.1.2.3/8", "abuse report 42");
tcp_is(1, "", "blocked\n", "listed as a range");
api(DELETE => "/maps/blocked?key=127.0.0.0/8");
tcp_is(1, "", "welcome\n", "removed");
--- request
GET /maps/blocked?key=127.0.0.1
--- error_code: 404
--- no_error_log
[error]

=== TEST 3: stream-sni.conf: TLS sessions count once per server name, read by ssl_preread, in the log phase
--- init
tls_hello(1, "a.example") for 1 .. 2;
tls_hello(1, "b.example");
sleep 0.3;
--- request eval
["GET /maps/sni?key=a.example", "GET /maps/sni?key=b.example"]
--- response_body eval
["2", "1"]
