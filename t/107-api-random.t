# shared_map_api: several hundred random binary keys and values, written,
# overwritten, added to and deleted over HTTP, then read back one by one and
# through the JSON listing, against a model kept here.
# TEST_NGINX_API_SEED=N replays a run (the seed is printed on failure).
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use JSON::PP ();
use MIME::Base64 ();

workers(2);
master_on();
no_shuffle();

our $Seed = $ENV{TEST_NGINX_API_SEED} // time;

# One keep-alive connection; each request goes out in a single write.
my $conn;
sub http {
    my ($method, $path, $body) = @_;
    $conn ||= IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}")
        or die "connect: $!";
    setsockopt($conn, IPPROTO_TCP, TCP_NODELAY, 1);
    $body //= '';
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    print $conn $req or die "write: $!";
    local $/ = "\r\n";
    my $status_line = <$conn> // die "no response to $method $path";
    my ($status) = $status_line =~ m{^HTTP/1\.1 (\d+)} or die "bad status line $status_line";
    my %h;
    while (defined(my $line = <$conn>)) {
        last if $line eq "\r\n";
        $line =~ s/\r\n\z//;
        my ($k, $v) = split /:\s*/, $line, 2;
        $h{lc $k} = $v;
    }
    my $content = '';
    if (($h{'transfer-encoding'} // '') eq 'chunked') {
        # Listings stream out in chunks.
        while (1) {
            my $size = <$conn> // die "short chunked body";
            $size =~ s/\r\n\z//;
            $size = hex $size;
            my $chunk = '';
            while (length($chunk) < $size + 2) {
                read($conn, $chunk, $size + 2 - length($chunk), length $chunk) or die "short chunk";
            }
            last if $size == 0;
            $content .= substr($chunk, 0, $size);
        }
        return ($status, \%h, $content);
    }
    my $len = $h{'content-length'} // 0;
    while (length($content) < $len) {
        read($conn, $content, $len - length($content), length $content) or die "short body";
    }
    return ($status, \%h, $content);
}

sub pct {
    my $s = shift;
    my $hex = rand() < 0.5 ? '%%%02X' : '%%%02x';
    $s =~ s/([^A-Za-z0-9\-._~])/sprintf($hex, ord $1)/ge;
    return $s;
}

sub rand_bytes { my $n = shift; CORE::join '', map { chr int rand 256 } 1 .. $n }

sub round_trip {
    my ($map) = @_;    # each block its own map: a reload (HUP mode) keeps a zone
    srand $Seed;
    my %model;    # key => [type, value]
    my @keys;
    my %seen;
    while (@keys < 400) {
        my $k = rand_bytes(int rand 48);
        push @keys, $k if !$seen{$k}++;
    }
    my $fail = 0;
    my $check = sub {
        my ($ok, $what) = @_;
        Test::More::ok($ok, "seed $Seed: $what") if !$ok;
        $fail++ if !$ok;
    };
    my $write = sub {
        my $k = shift;
        my $r = rand;
        my ($type, $v) = $r < 0.6 ? ('string', rand_bytes(int rand 600))
                       : $r < 0.8 ? ('int', int(rand(2**32)) - 2**31)
                       :            ('long', (int(rand(2**31)) - 2**30) * 2**32 + int rand 2**32);
        my ($s) = http('PUT', "/api/$map?key=" . pct($k) . "&type=$type", "$v");
        $check->($s == ($model{$k} ? 204 : 201), "PUT " . unpack('H*', $k) . " status $s");
        $model{$k} = [$type, "$v"];
    };
    $write->($_) for @keys;
    for (1 .. 150) {
        my $k = $keys[rand @keys];
        if (rand() < 0.3) {
            my ($s) = http('DELETE', "/api/$map?key=" . pct($k));
            $check->($s == ($model{$k} ? 204 : 404), "DELETE " . unpack('H*', $k) . " status $s");
            delete $model{$k};
        } elsif (rand() < 0.5 && $model{$k} && $model{$k}[0] ne 'string') {
            my $d = int(rand 2000) - 1000;
            my ($s, $h, $b) = http('POST', "/api/$map?key=" . pct($k) . "&incr=$d");
            my $new = $model{$k}[1] + $d;
            my $fits = $model{$k}[0] eq 'long' || ($new >= -2**31 && $new < 2**31);
            $check->($s == ($fits ? 200 : 409), "POST " . unpack('H*', $k) . " status $s");
            $model{$k}[1] = "$new" if $fits;
        } else {
            $write->($k);
        }
    }
    for my $k (@keys) {
        my ($s, $h, $b) = http('GET', "/api/$map?key=" . pct($k));
        my $name = "GET " . unpack('H*', $k);
        if (!$model{$k}) {
            $check->($s == 404, "$name: absent, got $s");
            next;
        }
        $check->($s == 200 && $h->{'x-shared-map-type'} eq $model{$k}[0] && $b eq $model{$k}[1],
                 "$name: expected $model{$k}[0] " . unpack('H*', $model{$k}[1]) . ", got $s "
                 . ($h->{'x-shared-map-type'} // '') . " " . unpack('H*', $b));
    }
    my ($s, $h, $b) = http('GET', "/api/$map?limit=100000");
    my $doc = JSON::PP::decode_json($b);
    my %listed;
    for my $e (@{ $doc->{entries} }) {
        my $k = exists $e->{key_base64} ? MIME::Base64::decode_base64($e->{key_base64}) : Encode::encode_utf8($e->{key});
        my $v = exists $e->{value_base64} ? MIME::Base64::decode_base64($e->{value_base64})
              : $e->{type} eq 'string' ? Encode::encode_utf8($e->{value}) : "$e->{value}";
        $listed{$k} = [$e->{type}, $v];
    }
    Test::More::is_deeply(\%listed, \%model, "seed $Seed: the listing equals the model");
    Test::More::is($doc->{stats}{entries}, scalar keys %model, "seed $Seed: entries count");
    Test::More::is($fail, 0, "seed $Seed: " . scalar(@keys) . " random keys round-trip through PUT, POST, DELETE and GET");
    close $conn;
    undef $conn;
}

use Encode ();

run_tests();

__DATA__

=== TEST 1: random binary keys and values round-trip, against a model
--- main_config
    load_module $TEST_NGINX_MODULE;
--- http_config
    shared_map rh hashmap?space=4m&entries=1000;
--- config
    location /api/ { shared_map_api; }
--- init
main::round_trip("rh");
--- request
GET /api/rh?limit=0
--- response_body_like eval
qr/^\{"name":"rh","stats":\{"type":"hashmap",.*"entries":\[\],"more":true\}\z/



=== TEST 2: the same in a tinymap
--- main_config
    load_module $TEST_NGINX_MODULE;
--- http_config
    shared_map rt tinymap?space=4m&entries=1000;
--- config
    location /api/ { shared_map_api; }
--- init
main::round_trip("rt");
--- request
GET /api/rt?limit=0
--- response_body_like eval
qr/^\{"name":"rt","stats":\{"type":"tinymap",.*"entries":\[\],"more":true\}\z/
