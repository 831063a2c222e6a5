package SharedMapStream;
# Set-up for the t/5xx files: the module's maps in `stream {}`. A block's
# `--- stream_config` goes into a `stream {}` block and its
# `--- stream_server_config` (and `_config2`) into servers listening on
# 127.0.0.1 at the test port + 1 (and + 2). A block's `--- init` drives TCP
# and UDP sessions and checks their replies (`tcp_is`, `udp_is`: Test::More
# assertions), then its `--- request`s read the maps through the HTTP API at
# `/api/`. Written for OpenResty's Test::Nginx.
use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use FindBin;

our @EXPORT = qw(use_stream_config stream_port udp_session tcp_session tcp_is udp_is api example_stream);

sub stream_port { ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + ($_[0] // 1) }

sub use_stream_config {
    my (%default) = @_;
    my $preprocessor = main->can('add_block_preprocessor')
        or die "use Test::Nginx::Socket before SharedMapStream";
    my ($p1, $p2) = (stream_port(1), stream_port(2));
    $preprocessor->(sub {
        my $block = shift;
        return if $block->name =~ /^\S+ \d+: \.\.\./;
        my $main = $block->main_config // 'load_module $TEST_NGINX_MODULE;';
        my $stream = $block->stream_config // $default{stream_config};
        my $server = $block->stream_server_config // $default{stream_server_config};
        if (defined $stream || defined $server) {
            $main .= "\nstream {\n" . ($stream // '') . "\n";
            $main .= "    server {\n        listen 127.0.0.1:$p1;\n" . ($server // '') . "\n    }\n"
                if defined $server;
            $main .= "    server {\n        listen 127.0.0.1:$p2;\n" . $block->stream_server_config2 . "\n    }\n"
                if defined $block->stream_server_config2;
            $main .= "}\n";
        }
        $block->set_value(main_config => $main);
        $block->set_value(http_config => $default{http_config} // '')
            if !defined $block->http_config;
        my $config = $block->config // $default{config} // '';
        $block->set_value(config => $config . <<"_EOC_");
    location /api/ { shared_map_api; }
_EOC_
    });
}

# The `stream {}` block of nginx-conf/$file, with each port of %ports that it
# uses (the example's) replaced by the test port + its value.
sub example_stream {
    my ($file, %ports) = @_;
    my $path = "$FindBin::Bin/../nginx-conf/$file";
    open my $fh, '<', $path or die "$path: $!";
    my $text = do { local $/; <$fh> };
    my ($stream) = $text =~ /^(stream \{\n.*?^\})/ms or die "$file: no stream block";
    while (my ($from, $n) = each %ports) {
        my $to = stream_port($n);
        $stream =~ s/127\.0\.0\.1:$from\b/127.0.0.1:$to/g;
    }
    return $stream;
}

# One TCP session to the stream server at test port + $n: sends $data, then
# reads until the server closes.
sub tcp_session {
    my ($n, $data) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => stream_port($n),
        Proto => 'tcp', Timeout => 3) or die "connect: $!";
    print {$sock} $data if defined $data && length $data;
    local $/;
    my $reply = <$sock> // '';
    close $sock;
    return $reply;
}

sub tcp_is {
    my ($n, $data, $expected, $name) = @_;
    Test::More::is(tcp_session($n, $data), $expected, $name);
}

sub udp_is {
    my ($n, $data, $expected, $name) = @_;
    Test::More::is(udp_session($n, $data), $expected, $name);
}

# A request to the HTTP API of the running nginx: api(METHOD, "NAME?key=K", body)
# (under /api/, or a path of its own: "/maps/NAME?key=K") gives the response body.
sub api {
    my ($method, $path, $body) = @_;
    require HTTP::Tiny;
    my $res = HTTP::Tiny->new(keep_alive => 0)->request($method,
        "http://127.0.0.1:" . stream_port(0) . ($path =~ m{^/} ? $path : "/api/$path"), defined $body ? { content => $body } : {});
    return $res->{content};
}

# One UDP datagram to the stream server at test port + $n, and its reply.
sub udp_session {
    my ($n, $data) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => stream_port($n),
        Proto => 'udp', Timeout => 3) or die "udp socket: $!";
    $sock->send($data) or die "send: $!";
    my $reply = '';
    my $rin = '';
    vec($rin, fileno($sock), 1) = 1;
    select(my $rout = $rin, undef, undef, 3) or die "no udp reply";
    $sock->recv($reply, 65536);
    close $sock;
    return $reply;
}

1;
