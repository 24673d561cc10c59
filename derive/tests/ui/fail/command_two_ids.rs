use factum::Command;

#[derive(Command)]
struct C {
    #[command(id)]
    order_id: String,
    #[command(id)]
    customer_id: String,
}

fn main() {}
