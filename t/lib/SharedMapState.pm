package SharedMapState;

# State files for the tests, in the format of docs/persistence.md: build one,
# and check and describe one as text; and the blocks of the state suites, which
# start nginx with a map kept in a state file and read that file back.

use strict;
use warnings;
use Compress::Zlib ();
use Exporter 'import';
use File::Temp ();

our @EXPORT_OK = qw(state_file describe use_state_config put_state_file);

my @TYPES = qw(int long string);
my @KINDS = ('unknown', 'tinymap', 'hashmap');

# state_file(kind, [key, type, value, expire], ...): kind 1 tinymap, 2 hashmap;
# type 0 int, 1 long, 2 string; expire in unix seconds, 0 never.
sub state_file {
    my ($kind, @records) = @_;
    my $body = '';
    for my $r (@records) {
        my ($k, $t, $v, $e) = @$r;
        my $val = $t == 0 ? pack('l<', $v) : $t == 1 ? pack('q<', $v) : $v;
        $body .= pack('V C V Q<', length $k, $t, $e, length $val) . $k . $val;
    }
    my $data = 'SHMSTATE' . pack('V V Q< V V', 1, $kind, scalar @records, time, 0) . $body;
    return $data . pack('V', Compress::Zlib::crc32($data));
}

# "ok KIND COUNT" then one "key type value never|expires" line per record,
# sorted; or a line saying what is wrong with the file.
sub describe {
    my ($data) = @_;
    return "too short\n" if length($data) < 36;
    my ($magic, $version, $kind, $count) = unpack('a8 V V Q<', $data);
    return "bad magic\n" if $magic ne 'SHMSTATE';
    return "version $version\n" if $version != 1;
    my $crc = unpack('V', substr($data, -4));
    return "checksum mismatch\n" if $crc != Compress::Zlib::crc32(substr($data, 0, -4));
    my $pos = 32;
    my @out;
    for (1 .. $count) {
        return "record cut short\n" if $pos + 17 > length($data) - 4;
        my ($klen, $type, $expire, $vlen) = unpack('V C V Q<', substr($data, $pos, 17));
        $pos += 17;
        return "record cut short\n" if $pos + $klen + $vlen > length($data) - 4;
        my $key = substr($data, $pos, $klen);
        $pos += $klen;
        my $v = substr($data, $pos, $vlen);
        $pos += $vlen;
        my $val = $type == 0 ? unpack('l<', $v) : $type == 1 ? unpack('q<', $v) : $v;
        push @out, join(' ', $key, $TYPES[$type] // "type$type", $val, $expire ? 'expires' : 'never');
    }
    return "trailing bytes\n" if $pos != length($data) - 4;
    return join '', "ok $KINDS[$kind] $count\n", map { "$_\n" } sort @out;
}

# A fresh directory for the file's state files, in $TEST_NGINX_STATE_DIR, and a
# block preprocessor for two sections of our own:
#
#   --- state_map: NAME TYPE?PARAMS FILE
#       nginx starts (with use_hup: reloads) for this block with the module
#       loaded, map NAME kept in $TEST_NGINX_STATE_DIR/FILE, and /incr?k=,
#       /value?k= and /state/FILE locations. A block without it has no config
#       and goes on with the running nginx.
#   --- state_file: FILE
#       the request reads FILE from the state directory, described as text (see
#       describe) for response_body to compare.
#
# Sections a block sets itself are kept. Returns the directory.
sub use_state_config {
    my $dir = $ENV{TEST_NGINX_STATE_DIR} = File::Temp::tempdir(CLEANUP => 1);
    my $preprocessor = main->can('add_block_preprocessor')
        or die "use Test::Nginx::Socket before SharedMapState";
    $preprocessor->(sub {
        my $block = shift;
        if (defined(my $spec = $block->state_map)) {
            my ($name, $params, $file) = split ' ', $spec;
            die "state_map wants NAME TYPE?PARAMS FILE, not \"$spec\"\n" if !defined $file;
            my %default = (
                main_config => 'load_module $TEST_NGINX_MODULE;',
                http_config => "shared_map $name $params&state=\$TEST_NGINX_STATE_DIR/$file;",
                config      => <<"_EOC_",
location /incr { shared_map_key $name \$arg_k; return 200 "[\$shared_map_incr]\\n"; }
location /value { shared_map_key $name \$arg_k; return 200 "[\$shared_map_value]\\n"; }
location /state/ { alias \$TEST_NGINX_STATE_DIR/; autoindex on; }
_EOC_
            );
            for my $section (keys %default) {
                $block->set_value($section => $default{$section}) if !defined $block->$section;
            }
        }
        if (defined(my $file = $block->state_file)) {
            $block->set_value(request => "GET /state/$file");
            $block->set_value(response_body_filters => \&describe);
        }
    });
    return $dir;
}

# Writes DATA to the state directory as NAME.
sub put_state_file {
    my ($name, $data) = @_;
    my $path = "$ENV{TEST_NGINX_STATE_DIR}/$name";
    open my $f, '>', $path or die "$path: $!";
    binmode $f;
    print $f $data;
    close $f or die "$path: $!";
}

1;
